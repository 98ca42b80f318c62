#!/usr/bin/env bash
# Soak benchmark (issue 10): one PPO CartPole run with 2 actor threads for SECONDS
# (default 3600), the process's resident memory sampled every minute.
#
#   benches/soak.sh [SECONDS] [OUT_DIR]
#
# Writes OUT_DIR/rss.csv (elapsed_s, env_steps, rss_kib, hwm_kib) and prints it. The
# run trains toward 10^9 steps and is stopped with SIGINT at the deadline (then
# SIGKILL if it lingers); its run directory is OUT_DIR/run. Memory that grows after
# warm-up is a leak: compare the samples after the first few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-3600}
out=${2:-runs/soak}
cargo build --release --quiet
rm -rf "$out"
mkdir -p "$out"
cp target/release/agent "$out/agent"
"$out/agent" train --env cartpole --actors 2 --steps 1000000000 --seed 1 -q \
  --set run.checkpoint_interval=500000 --out "$out/run" >"$out/train.log" 2>&1 &
pid=$!
echo "elapsed_s,env_steps,rss_kib,hwm_kib" >"$out/rss.csv"
start=$(date +%s)
while kill -0 "$pid" 2>/dev/null; do
  now=$(date +%s)
  elapsed=$((now - start))
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo "")
  hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo "")
  steps=$(tail -n 1 "$out/run/metrics.csv" 2>/dev/null | cut -d, -f1 || echo "")
  [ -n "$rss" ] && echo "$elapsed,$steps,$rss,$hwm" | tee -a "$out/rss.csv"
  if [ "$elapsed" -ge "$seconds" ]; then
    kill -INT "$pid" 2>/dev/null || true
    sleep 10
    kill -KILL "$pid" 2>/dev/null || true
    break
  fi
  sleep 60
done
wait "$pid" 2>/dev/null || true
echo "wrote $out/rss.csv"
