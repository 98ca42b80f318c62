#!/usr/bin/env bash
# Build the Arcade Learning Environment (ALE) for agentry's `atari` feature.
#
#   scripts/setup-atari.sh            # everything under $HOME/.cache/agentry/ale
#   ALE_CACHE_DIR=/opt/ale scripts/setup-atari.sh
#
# What it does (every step is skipped when its result is already there):
#   1. installs cmake with apt-get when it is missing (zlib1g-dev too);
#   2. downloads the ale-py 0.12.1 source distribution from PyPI with pip (it carries
#      ALE's full C++ source) and unpacks it;
#   3. builds ALE's static C++ library libale.a with cmake (C++ library only: no Python
#      module, no SDL, no vector interface);
#   4. installs the ale-py 0.12.1 wheel with pip, for its 108 ROMs.
# It ends by printing the directories to export; build.rs finds the default ones itself.
#
# Why RelWithDebInfo with -O3 rather than Release: ALE's CMakeLists switches on
# link-time optimisation for every build type but RelWithDebInfo, which fills libale.a
# with GCC LTO bytecode that each Rust link would have to re-optimise (and that linkers
# other than GNU ld with GCC's plugin cannot read). Setting the RelWithDebInfo flags to
# "-O3 -DNDEBUG" gives Release's optimisation without LTO and without debug info.
set -euo pipefail

ALE_VERSION=0.12.1
CACHE_DIR="${ALE_CACHE_DIR:-$HOME/.cache/agentry/ale}"
SRC_DIR="$CACHE_DIR/ale_py-$ALE_VERSION"
BUILD_DIR="$CACHE_DIR/build-$ALE_VERSION"
PYTHON="${PYTHON:-python3}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"

log() { printf '[setup-atari] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# 1. Tools.
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
[ -e /usr/include/zlib.h ] || missing+=(zlib1g-dev)
if [ "${#missing[@]}" -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
        log "installing ${missing[*]} with apt-get"
        as_root apt-get install -y "${missing[@]}" ||
            { as_root apt-get update && as_root apt-get install -y "${missing[@]}"; }
    else
        log "please install: ${missing[*]} (no apt-get here)"
        exit 1
    fi
fi

# 2. ALE's source, from the ale-py source distribution.
mkdir -p "$CACHE_DIR"
SDIST="$CACHE_DIR/ale_py-$ALE_VERSION.tar.gz"
if [ ! -f "$SDIST" ]; then
    log "downloading the ale-py $ALE_VERSION source distribution"
    # `--no-binary ale-py` rather than `:all:`: pip prepares the sdist's metadata and
    # would otherwise build its build requirements (jax among them) from source.
    "$PYTHON" -m pip download --quiet --no-deps --no-binary ale-py \
        "ale-py==$ALE_VERSION" -d "$CACHE_DIR"
fi
if [ ! -f "$SRC_DIR/src/ale/ale_interface.hpp" ]; then
    log "unpacking $SDIST"
    tar -xzf "$SDIST" -C "$CACHE_DIR"
fi

# 3. libale.a.
if [ ! -f "$BUILD_DIR/src/ale/libale.a" ]; then
    log "building libale.a in $BUILD_DIR"
    start=$(date +%s)
    cmake -S "$SRC_DIR" -B "$BUILD_DIR" \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O3 -DNDEBUG" \
        -DBUILD_CPP_LIB=ON \
        -DBUILD_PYTHON_LIB=OFF \
        -DBUILD_VECTOR_LIB=OFF \
        -DSDL_SUPPORT=OFF \
        -DBUILD_SHARED_LIBS=OFF >&2
    cmake --build "$BUILD_DIR" --target ale-lib -j "$JOBS" >&2
    log "libale.a built in $(($(date +%s) - start)) s"
fi

# 4. ROMs, from the ale-py wheel.
if ! "$PYTHON" -c "import ale_py" >/dev/null 2>&1 ||
    [ "$("$PYTHON" -c 'import ale_py; print(ale_py.__version__)')" != "$ALE_VERSION" ]; then
    log "installing the ale-py $ALE_VERSION wheel (for its ROMs)"
    "$PYTHON" -m pip install --quiet "ale-py==$ALE_VERSION"
fi
ROM_DIR="$("$PYTHON" -c 'import ale_py, os; print(os.path.join(os.path.dirname(ale_py.__file__), "roms"))')"

log "done; $(find "$ROM_DIR" -name '*.bin' | wc -l) ROMs in $ROM_DIR"
echo "export ALE_SOURCE_DIR=$SRC_DIR"
echo "export ALE_BUILD_DIR=$BUILD_DIR"
echo "export ALE_ROM_DIR=$ROM_DIR"
