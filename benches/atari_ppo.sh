#!/usr/bin/env bash
# PPO on Atari (issue 6's learning benchmark): the ppo-atari preset on Pong and Breakout,
# SEEDS seeds each, STEPS agent steps per run (default 500 000 = 2M frames), one run at a
# time (each uses both cores: 2 actor threads, then the actor and critic updates side by
# side), then one plot per game of the whole-game returns against env steps.
#   benches/atari_ppo.sh                    # everything: 6 runs of ~1 h each on 2 cores
#   GAMES=Breakout SEEDS=1 benches/atari_ppo.sh
# The step size anneals over ANNEAL env steps (default 10M: CleanRL's and the preset's
# full Atari budget), so a STEPS-step run is the first part of that schedule, as
# CleanRL's curves at the same frame counts are (before 2026-11-30 23:00 UTC the runs
# annealed over STEPS). Needs scripts/setup-atari.sh once. Runs go to $OUT (default runs/atari-ppo), plots to
# benches/results/ppo-atari-{game}.png (PLOT=0: no plot). SET="key=value ..." adds settings
# to new runs (e.g. SET="ppo.pfo_coef=1" OUT=runs/atari-ppo-pfo). AGENT=path runs that binary (built with
# `--features atari`) instead of building target/release/agent: a build of the
# workspace without the feature, while the script runs, would replace the one it uses.
set -euo pipefail
cd "$(dirname "$0")/.."
GAMES=${GAMES:-"Pong Breakout"}
SEEDS=${SEEDS:-"1 2 3"}
STEPS=${STEPS:-500000}
ANNEAL=${ANNEAL:-10000000}
OUT=${OUT:-runs/atari-ppo}
PLOT=${PLOT:-1}
sets=()
for kv in ${SET:-}; do sets+=(--set "$kv"); done
if [ -z "${AGENT:-}" ]; then
  cargo build --release --features atari --bin agent -q
  AGENT=target/release/agent
fi
echo "== $(date -u +%FT%TZ) on $(nproc) cores:$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
for game in $GAMES; do
  dirs=()
  for seed in $SEEDS; do
    dir="$OUT/$game-seed$seed"
    dirs+=("$dir")
    if [ -f "$dir/summary.json" ] && grep -q "\"env_steps\": $STEPS" "$dir/summary.json"; then
      echo "== $dir: done already"
      continue
    fi
    echo "== $AGENT train --env atari:$game --seed $seed --steps $STEPS --out $dir (annealing over $ANNEAL)"
    if [ -d "$dir/checkpoints" ]; then
      "$AGENT" train --resume "$dir" --steps "$STEPS" -q
    else
      "$AGENT" train --env "atari:$game" --seed "$seed" --steps "$STEPS" --out "$dir" -q \
        --set "ppo.anneal_steps=$ANNEAL" "${sets[@]}"
    fi
    tail -1 "$dir/metrics.csv" | cut -d, -f1-6
  done
  [ "$PLOT" = 1 ] || continue
  lower=$(echo "$game" | tr '[:upper:]' '[:lower:]')
  "$AGENT" plot "${dirs[@]}" --metric episode_return_mean --smooth 5 \
    --out "benches/results/ppo-atari-$lower.png"
done
