#!/usr/bin/env bash
# The PPO comparison of BENCHMARKS.md, back to back in one session on a quiet machine:
# agentry (agent train, the ppo-cartpole preset), Stable-Baselines3 (rl-zoo3's preset),
# a CleanRL-style PyTorch PPO, then single-observation inference (agent bench inference
# vs PyTorch). Usage: benches/ppo.sh /path/to/venv/bin/python   (a venv with
# benches/peers/requirements-ppo.txt). Results: stdout, and JSON in $OUT (default /tmp/ppo-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:?usage: benches/ppo.sh PYTHON}
OUT=${OUT:-/tmp/ppo-bench}
mkdir -p "$OUT"
cargo build --release --bin agent
date -u; nproc; lscpu | grep 'Model name' || true
echo "== agentry";  python3 benches/ppo_agentry.py --seeds 1,2,3 --out "$OUT/agentry.json"
echo "== SB3";      "$PY" benches/peers/ppo_sb3.py --seeds 1,2,3 --steps 100000 --out "$OUT/sb3.json"
echo "== CleanRL";  "$PY" benches/peers/ppo_cleanrl.py --seeds 1,2,3 --steps 100000 --out "$OUT/cleanrl.json"
echo "== agentry inference"; target/release/agent bench inference
echo "== PyTorch inference"; "$PY" benches/peers/torch_inference.py --out "$OUT/torch-inference.json"
