#!/usr/bin/env bash
# Environment stepping speed: agentry against Gymnasium and EnvPool, in one run.
# Usage: benches/envs.sh [PYTHON]   (PYTHON: a venv with benches/peers/requirements.txt;
# default /tmp/peers/bin/python). Prints each figure with the command that made it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-/tmp/peers/bin/python}
cargo build --release --bin agent -q
AGENT=target/release/agent
run() { echo "\$ $*"; "$@" 2>&1 | grep -v -i warn; }

echo "== $(date -u +%F) on $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
run $AGENT bench envs --env cartpole --num-envs 8 --threads 1 --steps 5000000
run $AGENT bench envs --env cartpole --num-envs 8 --threads 2 --steps 5000000
run "$PY" benches/peers/gym_bench.py --env CartPole-v1 --steps 300000
run "$PY" benches/peers/envpool_bench.py --env CartPole-v1 --num-envs 8 --threads 1 --steps 1000000
run "$PY" benches/peers/envpool_bench.py --env CartPole-v1 --num-envs 8 --threads 2 --steps 1000000
run $AGENT bench envs --env cartpole --num-envs 1024 --threads 1 --steps 20000000
run $AGENT bench envs --env cartpole --num-envs 1024 --threads 2 --steps 20000000
run "$PY" benches/peers/envpool_bench.py --env CartPole-v1 --num-envs 1024 --threads 1 --steps 4000000
run "$PY" benches/peers/envpool_bench.py --env CartPole-v1 --num-envs 1024 --threads 2 --steps 4000000
run $AGENT bench envs --env acrobot --num-envs 1024 --threads 1 --steps 4000000
run $AGENT bench envs --env acrobot --num-envs 1024 --threads 2 --steps 4000000
run "$PY" benches/peers/gym_bench.py --env Acrobot-v1 --steps 100000
run "$PY" benches/peers/envpool_bench.py --env Acrobot-v1 --num-envs 1024 --threads 2 --steps 2000000
for env in dark-room tictactoe; do
  run $AGENT bench envs --env $env --num-envs 64 --threads 2 --steps 5000000
done
run $AGENT bench envs --env tictactoe -p opponent=minimax --num-envs 64 --threads 2 --steps 5000000
run $AGENT bench envs --env pendulum --num-envs 64 --threads 2 --steps 5000000
run "$PY" benches/peers/gym_bench.py --env Pendulum-v1 --steps 100000
