#!/usr/bin/env bash
# Issue 7's learning benchmark: PPO experts on CartPole, Acrobot, Dark-Room (GOALS) and
# tic-tac-toe; EPISODES recorded episodes of each (`agent collect`, sampled actions);
# then one LRAM and one Decision Transformer trained on all of them together
# (`agent train --algo lram|dt --dataset DIR`), each evaluated online on every task
# with the normalised score (expert = the recorded policy's mean return, 1; a random
# policy's, 0). Resumable: finished steps are skipped.
#   benches/lram.sh                       # ~1 h on 2 cores
#   UPDATES=2000 SEEDS=1 benches/lram.sh  # a quick pass
# Output in $OUT (default runs/lram-bench): experts/, data/, {lram,dt}-seedS/, and the
# per-task table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/lram-bench}
EPISODES=${EPISODES:-50}
UPDATES=${UPDATES:-6000}
SEEDS=${SEEDS:-"1"}
GOALS=${GOALS:-"9,9 5,5 2,8 8,2"}
EVAL_EPISODES=${EVAL_EPISODES:-20}
SETS=${SETS:-}
cargo build --release --bin agent -q
AGENT=target/release/agent
echo "== $(date -u +%FT%TZ) on $(nproc) cores:$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
mkdir -p "$OUT/experts" "$OUT/data"

expert() { # name, then train arguments
  local name=$1; shift
  local dir="$OUT/experts/$name"
  if [ ! -f "$dir/summary.json" ]; then
    rm -rf "$dir"
    echo "== $AGENT train $* --out $dir"
    "$AGENT" train "$@" --out "$dir" -q
  fi
  local data="$OUT/data/$name.agds"
  if [ ! -f "$data" ]; then
    "$AGENT" collect --run "$dir" --episodes "$EPISODES" --reference-episodes 1000 --seed 11 \
      --out "$data"
  fi
}

expert cartpole --env cartpole
expert acrobot --env acrobot
expert tictactoe --env tictactoe
for g in $GOALS; do
  expert "dark-room-${g/,/-}" --env dark-room --set "env.goal=[$g]"
done

for seed in $SEEDS; do
  for algo in lram dt; do
    dir="$OUT/$algo-seed$seed"
    if [ -f "$dir/summary.json" ]; then
      echo "== $dir: done already"
    elif [ -d "$dir/checkpoints" ] && ls "$dir/checkpoints" | grep -q learner; then
      "$AGENT" train --resume "$dir" -q
    else
      rm -rf "$dir"
      # shellcheck disable=SC2086
      "$AGENT" train --algo "$algo" --dataset "$OUT/data" --steps "$UPDATES" --seed "$seed" \
        --out "$dir" -q --set "$algo.eval_interval=0" $SETS
    fi
    echo "== $algo seed $seed"
    "$AGENT" eval --run "$dir" --episodes "$EVAL_EPISODES" --seed 101
  done
done
