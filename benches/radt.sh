#!/usr/bin/env bash
# Issue 8's benchmark: RA-DT against its baselines on Dark-Room (10×10, 100 steps per
# episode). Learning histories on RA-DT's 80 training goals (PPO's, HISTORY_STEPS env
# steps each, every episode recorded with run.record_history; or Q-learning's with
# SOURCE=q-learning, HISTORY_EPISODES episodes each); then, for each seed in
# SEEDS, three models trained on all of them for UPDATES updates:
#   radt  RA-DT (configs/radt-offline.toml: context 25 steps + one retrieved 50-step
#         sub-trajectory); its training ends with its in-context evaluation, which
#         also plays its frozen plain DT without memory (frozen_dt)
#   ad    an Algorithm-Distillation-style DT (benches/radt/ad.toml): context 200
#         steps (two episodes) across the episode boundaries of the histories
#   dt    a plain DT (benches/radt/dt.toml): context 100 steps (one episode)
# and the same in-context evaluation of each (`agent eval --run DIR --in-context`):
# 40 consecutive episodes on each of the 20 held-out goals, the context or memory
# carried from episode to episode. `agent plot --in-context` gathers the curves, mean
# ± std over the seeds, into one CSV and one PNG. Resumable: finished runs are kept.
#   benches/radt.sh                                   # ~1 h per seed on 2 busy cores
#   SEEDS="1 2 3" UPDATES=3000 HISTORY_STEPS=100000 benches/radt.sh
#   SOURCE=q-learning OUT=runs/radt-q benches/radt.sh   # Q-learning histories
# Output: $OUT (default runs/radt-bench): histories/, seed$S/{radt,ad,dt}/ with
# in_context.csv; $RESULT.csv and $RESULT.png (default
# benches/results/radt-dark-room-in-context).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/radt-bench}
# SOURCE: the learner whose histories the models are trained on: ppo (the ppo-dark-room
# preset, HISTORY_STEPS env steps per goal) or q-learning (`agent collect --learner
# q-learning`: a Q-table with optimistic initial values, HISTORY_EPISODES episodes per
# goal; it improves within tens of episodes, PPO within hundreds).
SOURCE=${SOURCE:-ppo}
HISTORY_STEPS=${HISTORY_STEPS:-60000}
HISTORY_EPISODES=${HISTORY_EPISODES:-100}
UPDATES=${UPDATES:-1000}
SEEDS=${SEEDS:-1 2}
# Extra `--set K=V` flags: RADT_SETS for RA-DT (its retrieval.* and radt.* keys), DT_SETS
# for the AD and DT baselines (dt.* keys).
RADT_SETS=${RADT_SETS:-}
DT_SETS=${DT_SETS:-}
RESULT=${RESULT:-benches/results/radt-dark-room-in-context}
# The histories are one PPO run per goal, always of seed 1.
SEED=1
# RA-DT's split of the 10×10 room (configs/env_params/dark_room.yaml of ml-jku/RA-DT;
# what agentry_envs::grid::goal_split(10, 10) gives): the 80 training goals.
TRAIN_GOALS="2,0 0,2 1,5 2,2 5,7 9,1 6,9 5,5 1,1 7,9 0,9 3,8 8,5 0,0 8,9 1,3 0,5 0,1 9,5
8,3 4,4 1,2 7,8 9,4 3,7 9,2 9,7 5,6 6,3 4,6 0,8 3,3 4,5 1,9 1,4 9,3 7,3 3,9 2,4 0,6 6,2 2,3
1,8 4,2 8,0 8,6 3,1 6,7 2,7 1,0 4,0 7,0 9,6 8,8 2,6 5,4 7,1 2,9 2,5 4,3 4,1 7,2 0,3 8,1 5,3
7,7 6,1 0,7 2,8 9,9 5,2 4,8 8,2 6,0 7,4 3,2 4,7 7,6 3,6 0,4"
# AGENT=path: a binary to use instead of building one (a copy that later builds do not
# replace while the benchmark runs).
if [ -z "${AGENT:-}" ]; then
  cargo build --release --bin agent -q
  AGENT=${CARGO_TARGET_DIR:-target}/release/agent
fi
echo "== $(date -u +%FT%TZ) on $(nproc) cores:$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
histories=()
if [ "$SOURCE" = q-learning ]; then
  # One file per goal: the whole history of a Q-table learning it from scratch.
  for g in $TRAIN_GOALS; do
    file="$OUT/histories/goal-${g/,/-}.agds"
    histories+=("$file")
    [ -f "$file" ] && continue
    mkdir -p "$OUT/histories"
    "$AGENT" collect --learner q-learning --env dark-room -p "goal=[$g]" \
      --episodes "$HISTORY_EPISODES" --seed "$SEED" --out "$file.tmp" > /dev/null 2>&1
    mv "$file.tmp" "$file"
  done
  echo "== $(date -u +%T) histories: ${#histories[@]} goals × $HISTORY_EPISODES q-learning episodes"
  # The source learner's own first 40 episodes on the held-out goals, 3 seeds: the
  # speed the histories show, for the in-context curves to be read against.
  ref="$OUT/q-learning-held-out.txt"
  if [ ! -f "$ref" ]; then
    for x in 0 1 2 3 4 5 6 7 8 9; do
      for y in 0 1 2 3 4 5 6 7 8 9; do
        case " $(echo $TRAIN_GOALS) " in *" $x,$y "*) continue ;; esac
        for s in 1 2 3; do
          line=$("$AGENT" collect --learner q-learning --env dark-room -p "goal=[$x,$y]" \
            --episodes 40 --seed "$s" --out "$OUT/held-out.tmp.agds" 2>/dev/null)
          echo "goal $x,$y seed $s: ${line##*episodes: }"
        done
      done
    done > "$ref.tmp"
    rm -f "$OUT/held-out.tmp.agds"
    mv "$ref.tmp" "$ref"
  fi
  awk '{ for (i = 5; i <= NF; i++) { s[i] += $i; n[i]++ } }
       END { printf "== q-learning itself on the 20 held-out goals (3 seeds), mean return per 10 episodes:";
             for (i = 5; i in s; i++) printf " %.2f", s[i] / n[i]; print "" }' "$ref"
else
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
fi
runs=()
for seed in $SEEDS; do
  for model in radt ad dt; do
    dir="$OUT/seed$seed/$model"
    runs+=("$dir")
    if [ ! -f "$dir/summary.json" ]; then
      if [ -d "$dir/checkpoints" ] && ls "$dir/checkpoints" | grep -q learner; then
        "$AGENT" train --resume "$dir" -q
      else
        rm -rf "$dir"
        mkdir -p "$OUT/seed$seed"
        if [ "$model" = radt ]; then
          # shellcheck disable=SC2086
          "$AGENT" train --algo radt --dataset "${histories[@]}" --steps "$UPDATES" \
            --seed "$seed" --out "$dir" -q $RADT_SETS
        else
          # shellcheck disable=SC2086
          "$AGENT" train --algo dt --config "benches/radt/$model.toml" \
            --dataset "${histories[@]}" --steps "$UPDATES" --seed "$seed" --out "$dir" -q $DT_SETS
        fi
      fi
      echo "== $(date -u +%T) seed $seed: $model trained"
    fi
    # (RA-DT's training ends with its in-context evaluation.)
    if [ ! -f "$dir/in_context.csv" ]; then
      "$AGENT" eval --run "$dir" --in-context --seed "$seed" > /dev/null
      echo "== $(date -u +%T) seed $seed: $model evaluated in context"
    fi
  done
done
mkdir -p "$(dirname "$RESULT")"
"$AGENT" plot --in-context "${runs[@]}" --out "$RESULT.png"
echo "== $(date -u +%T) in-context curves (mean ± std over the seeds' means over the 20 held-out goals)"
cat "$RESULT.csv"
