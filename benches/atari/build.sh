#!/usr/bin/env bash
# Build benches/atari/ale_loop (ALE's own C++ loop) against the ALE that
# scripts/setup-atari.sh built: g++ -O3, libale.a, zlib, pthread.
#
#   benches/atari/build.sh [OUT]      # default OUT: benches/atari/ale_loop; prints it
#
# Finds ALE as envs/build.rs does: ALE_BUILD_DIR / ALE_SOURCE_DIR, else the cache
# (ALE_CACHE_DIR, default $HOME/.cache/agentry/ale). The include directories are the
# source tree's src/ (ale/ale_interface.hpp) and the build's src/ale (the generated
# version.hpp), the ones cmake compiled libale.a with.
set -euo pipefail
OUT="$(realpath -m "${1:-$(dirname "$0")/ale_loop}")"
cd "$(dirname "$0")"
ALE_VERSION=0.12.1
CACHE_DIR="${ALE_CACHE_DIR:-$HOME/.cache/agentry/ale}"
BUILD_DIR="${ALE_BUILD_DIR:-$CACHE_DIR/build-$ALE_VERSION}"
SOURCE_DIR="${ALE_SOURCE_DIR:-$CACHE_DIR/ale_py-$ALE_VERSION}"
for f in "$SOURCE_DIR/src/ale/ale_interface.hpp" "$BUILD_DIR/src/ale/libale.a" "$BUILD_DIR/src/ale/version.hpp"; do
    [ -f "$f" ] || { echo "missing $f: run scripts/setup-atari.sh first" >&2; exit 1; }
done
# -O3 as libale.a itself was built (scripts/setup-atari.sh); no -march=native, as neither
# libale.a nor the Rust build use it.
g++ -std=c++17 -O3 -DNDEBUG \
    -I"$SOURCE_DIR/src" -I"$BUILD_DIR/src/ale" \
    ale_loop.cpp -o "$OUT" \
    "$BUILD_DIR/src/ale/libale.a" -lz -pthread
echo "$OUT"
