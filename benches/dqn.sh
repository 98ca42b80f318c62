#!/usr/bin/env bash
# The DQN and Rainbow CartPole wall-clock comparison of BENCHMARKS.md, back to back in one session on
# a quiet machine: for each of dqn and rainbow, agentry (agent train, configs/{algo}-cartpole.toml)
# for 50k env steps on seeds 1,2,3, then the CleanRL-style PyTorch peer reading the same preset.
# Usage: benches/dqn.sh /path/to/venv/bin/python   (a venv with benches/peers/requirements-ppo.txt).
# Results: stdout, and JSON in $OUT (default /tmp/dqn-bench): agentry-{algo}.json, cleanrl-{algo}.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:?usage: benches/dqn.sh PYTHON}
OUT=${OUT:-/tmp/dqn-bench}
mkdir -p "$OUT"
cargo build --release --bin agent
date -u; nproc; lscpu | grep 'Model name' || true
for algo in dqn rainbow; do
    echo "== agentry $algo"
    python3 benches/dqn_agentry.py --algo "$algo" --seeds 1,2,3 --steps 50000 --out "$OUT/agentry-$algo.json"
    echo "== PyTorch $algo"
    "$PY" benches/peers/dqn_cleanrl.py --algo "$algo" --preset "configs/$algo-cartpole.toml" \
        --seeds 1,2,3 --steps 50000 --out "$OUT/cleanrl-$algo.json"
done
