#!/usr/bin/env bash
# Atari speed (issue 6): agentry against ALE's own C++ loop, ale-py, Gymnasium and
# EnvPool, in one run. Prints each figure with the command that made it.
#
#   benches/atari.sh [PYTHON]
#
# PYTHON: a venv with ale-py 0.12.1, gymnasium, numpy, opencv-python-headless and
# envpool (benches/peers/requirements-atari.txt; default /tmp/benchvenv/bin/python).
# Needs ALE built by scripts/setup-atari.sh. Set FRAMES / STEPS for shorter runs, and
# SECTIONS (default "1 2 3") to run only some of the three below.
#
# 1. Raw emulator frames/s (Breakout, one frame per call, random minimal-set actions,
#    sticky 0.25, the RGB screen read every frame), each loop twice, alternating:
#    agentry's binding (envs/examples/atari_speed.rs), ALE's C++ loop
#    (benches/atari/ale_loop.cpp), ale-py's ALEInterface (envs/examples/atari_speed.py).
# 2. Raw v5 steps/s: agentry's `ALE/Breakout-v5` against Gymnasium's and the closest
#    EnvPool allows (see benches/peers/atari_bench.py).
# 3. Preprocessed steps/s (8 copies, 1 and 2 threads): agentry's `atari:Breakout`
#    against Gymnasium's v5 with AtariPreprocessing + FrameStack 4 and EnvPool's
#    `Breakout-v5`, all with the same settings; skipped while agentry has no
#    preprocessed Atari env (envs/src/atari/preprocess.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-/tmp/benchvenv/bin/python}
FRAMES=${FRAMES:-300000}
STEPS=${STEPS:-40000}
SECTIONS=${SECTIONS:-1 2 3}
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release --features atari --bin agent -q
cargo build --release -p agentry-envs --features atari --example atari_speed -q
AGENT=$TARGET/release/agent
SPEED=$TARGET/release/examples/atari_speed
ALE_LOOP=$(benches/atari/build.sh "$TARGET/ale_loop")
ROM=$("$PY" -c 'import ale_py, os; print(os.path.join(os.path.dirname(ale_py.__file__), "roms", "breakout.bin"))')
PEER=benches/peers/atari_bench.py
# Percent of all cores busy over the second before a run (load averages lag a minute).
busy() {
  local a b
  read -ra a < <(head -1 /proc/stat); sleep 1; read -ra b < <(head -1 /proc/stat)
  local total=0 idle=$(( (b[4] + b[5]) - (a[4] + a[5]) ))
  for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
  echo $(( 100 * (total - idle) / (total > 0 ? total : 1) ))
}
run() {
  echo "\$ $*  [load $(cut -d' ' -f1-3 /proc/loadavg); cores busy just before: $(busy)%]"
  # CPU seconds too: under contention, frames per CPU second still compare single threads.
  /usr/bin/time -f '  (%e s wall, %U s user + %S s sys)' "$@" 2>&1 |
    grep -v -i -e warn -e 'A.L.E:' -e 'Powered by Stella'
}

echo "== $(date -u '+%F %H:%M UTC') on $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
section() { [[ " $SECTIONS " == *" $1 "* ]]; }

if section 1; then
echo "== 1. raw emulator frames/s"
for round in 1 2; do
  run $SPEED $FRAMES
  run $ALE_LOOP "$ROM" $FRAMES
  run "$PY" envs/examples/atari_speed.py $FRAMES
done
# What the screen read costs, and the public std::vector overload against the pointer one.
run $ALE_LOOP "$ROM" $FRAMES --screen=vector
run $ALE_LOOP "$ROM" $FRAMES --screen=none
# Start-up costs (ROM load; Python's imports), to take out of the CPU seconds above.
run $SPEED 1
run $ALE_LOOP "$ROM" 1
run "$PY" envs/examples/atari_speed.py 1

fi

if section 2; then
echo "== 2. raw v5 steps/s (RGB 210x160, frameskip 4, sticky 0.25)"
run $AGENT bench envs --env ALE/Breakout-v5 --num-envs 8 --threads 1 --steps $STEPS
run $AGENT bench envs --env ALE/Breakout-v5 --num-envs 8 --threads 2 --steps $STEPS
run "$PY" $PEER --peer gym --raw --steps $((STEPS / 2))
run "$PY" $PEER --peer gym --raw --vector 8 --mode sync --steps $((STEPS / 2))
run "$PY" $PEER --peer envpool --raw --num-envs 8 --threads 1 --steps $STEPS
run "$PY" $PEER --peer envpool --raw --num-envs 8 --threads 2 --steps $STEPS

fi

section 3 || exit 0
echo "== 3. preprocessed steps/s (84x84 gray, stack 4, frame skip 4 + max-pool, noop 30, episodic life, fire reset, sign reward, sticky 0.25)"
if [ ! -f envs/src/atari/preprocess.rs ]; then
  echo "(skipped: this checkout has no preprocessed atari:Breakout yet)"
  exit 0
fi
for round in 1 2; do
  run $AGENT bench envs --env atari:Breakout --num-envs 8 --threads 1 --steps $STEPS
  run "$PY" $PEER --peer envpool --num-envs 8 --threads 1 --steps $STEPS
  run $AGENT bench envs --env atari:Breakout --num-envs 8 --threads 2 --steps $STEPS
  run "$PY" $PEER --peer envpool --num-envs 8 --threads 2 --steps $STEPS
done
run "$PY" $PEER --peer gym --steps $((STEPS / 2))
run "$PY" $PEER --peer gym --vector 8 --mode sync --steps $((STEPS / 2))
run "$PY" $PEER --peer gym --vector 2 --mode async --steps $((STEPS / 2))
run "$PY" $PEER --peer gym --vector 8 --mode async --steps $((STEPS / 2))
