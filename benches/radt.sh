#!/usr/bin/env bash
# Issue 8's benchmark: RA-DT on Dark-Room (10×10, 100 steps per episode). PPO learning
# histories on RA-DT's 80 training goals (HISTORY_STEPS env steps each, every episode
# recorded with run.record_history), one RA-DT trained on all of them
# (`agent train --algo radt`), then its in-context evaluation on the 20 held-out goals:
# 40 consecutive episodes each, the memory filling with its own experience, against
# the frozen plain DT of its first phase acting without memory. Resumable.
#   benches/radt.sh                        # ~40 min on 2 cores
#   HISTORY_STEPS=20000 UPDATES=1500 benches/radt.sh
# Output in $OUT (default runs/radt-bench): histories/, radt-seed1/ with in_context.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/radt-bench}
HISTORY_STEPS=${HISTORY_STEPS:-30000}
UPDATES=${UPDATES:-3000}
SEED=${SEED:-1}
SETS=${SETS:-}
# RA-DT's split of the 10×10 room (configs/env_params/dark_room.yaml of ml-jku/RA-DT;
# what agentry_envs::grid::goal_split(10, 10) gives): the 80 training goals.
TRAIN_GOALS="2,0 0,2 1,5 2,2 5,7 9,1 6,9 5,5 1,1 7,9 0,9 3,8 8,5 0,0 8,9 1,3 0,5 0,1 9,5
8,3 4,4 1,2 7,8 9,4 3,7 9,2 9,7 5,6 6,3 4,6 0,8 3,3 4,5 1,9 1,4 9,3 7,3 3,9 2,4 0,6 6,2 2,3
1,8 4,2 8,0 8,6 3,1 6,7 2,7 1,0 4,0 7,0 9,6 8,8 2,6 5,4 7,1 2,9 2,5 4,3 4,1 7,2 0,3 8,1 5,3
7,7 6,1 0,7 2,8 9,9 5,2 4,8 8,2 6,0 7,4 3,2 4,7 7,6 3,6 0,4"
cargo build --release --bin agent -q
AGENT=target/release/agent
echo "== $(date -u +%FT%TZ) on $(nproc) cores:$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
histories=()
for g in $TRAIN_GOALS; do
  dir="$OUT/histories/goal-${g/,/-}"
  histories+=("$dir/history")
  [ -f "$dir/summary.json" ] && continue
  rm -rf "$dir"
  "$AGENT" train --env dark-room --set "env.goal=[$g]" --set run.record_history=true \
    --set "run.checkpoint_interval=$HISTORY_STEPS" --steps "$HISTORY_STEPS" --seed "$SEED" \
    --out "$dir" -q > /dev/null
done
echo "== $(date -u +%T) histories: ${#histories[@]} goals × $HISTORY_STEPS steps"
dir="$OUT/radt-seed$SEED"
if [ ! -f "$dir/summary.json" ]; then
  if [ -d "$dir/checkpoints" ] && ls "$dir/checkpoints" | grep -q learner; then
    "$AGENT" train --resume "$dir" -q
  else
    rm -rf "$dir"
    # shellcheck disable=SC2086
    "$AGENT" train --algo radt --dataset "${histories[@]}" --steps "$UPDATES" --seed "$SEED" \
      --out "$dir" -q $SETS
  fi
fi
echo "== $(date -u +%T) in-context curve (mean ± std over the 20 held-out goals)"
cat "$dir/in_context.csv"
