#!/usr/bin/env bash
# Sourced by ./landscape-dev: finds or installs libtorch 2.13.0 (the version tch 0.26
# expects) and the Python packages the tests use, then exports LIBTORCH and PYTHON.
#
# - If LIBTORCH is set, it is used as it is (no install).
# - Otherwise torch==2.13.0 is pip-installed once into a virtual environment in a
#   per-machine cache directory keyed by version, shared by every clone:
#   ${TCH_LANDSCAPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tch-landscape}/torch-2.13.0
# - A symlink .libtorch in the repository points at it, so plain `cargo build` /
#   `cargo test` work afterwards (.cargo/config.toml reads LIBTORCH from it).
set -euo pipefail

TORCH_VERSION=2.13.0
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_ROOT="${TCH_LANDSCAPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tch-landscape}"
VENV="$CACHE_ROOT/torch-$TORCH_VERSION/venv"
PY_TEST_PACKAGES=(numpy pyarrow duckdb polars scikit-learn)

log() { printf '[landscape-dev] %s\n' "$*" >&2; }

find_python() {
    for p in python3.11 python3 python; do
        if command -v "$p" >/dev/null 2>&1; then command -v "$p"; return 0; fi
    done
    log "error: Python 3 is needed to install libtorch (pip torch==$TORCH_VERSION); none found on PATH"
    return 1
}

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        local py; py="$(find_python)"
        log "creating $VENV"
        mkdir -p "$(dirname "$VENV")"
        "$py" -m venv "$VENV"
    fi
    PYTHON="$VENV/bin/python"
}

ensure_torch() {
    ensure_venv
    # The lock serialises concurrent first installs from several clones.
    exec 9>"$CACHE_ROOT/torch-$TORCH_VERSION/.install.lock"
    flock 9
    if ! "$PYTHON" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
        log "installing torch==$TORCH_VERSION into $VENV (once per machine, ~1-2 min, ~5 GB)"
        "$PYTHON" -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
    fi
    flock -u 9
    LIBTORCH="$("$PYTHON" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)"
}

ensure_test_packages() {
    ensure_venv
    if ! "$PYTHON" -c 'import numpy, pyarrow, duckdb, polars, sklearn' 2>/dev/null; then
        log "installing test packages: ${PY_TEST_PACKAGES[*]}"
        "$PYTHON" -m pip install --quiet --disable-pip-version-check "${PY_TEST_PACKAGES[@]}"
    fi
}

ensure_chromium() {
    # The report tests open the HTML report in headless Chromium.
    for b in chromium chromium-browser google-chrome; do
        command -v "$b" >/dev/null 2>&1 && return 0
    done
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        log "installing Debian's chromium for the browser tests"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
    else
        log "error: the report tests need headless Chromium; install it (e.g. sudo apt-get install chromium)"
        return 1
    fi
}

ensure_mpi() {
    # The MPI tests (cargo feature `mpi`) need Open MPI and libclang (bindgen).
    if command -v mpicc >/dev/null 2>&1 && command -v mpirun >/dev/null 2>&1 \
        && ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
        return 0
    fi
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        log "installing Open MPI and libclang for the MPI tests"
        local pkgs="libopenmpi-dev openmpi-bin libclang-dev"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q $pkgs >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $pkgs >/dev/null; }
    else
        log "error: the MPI tests need Open MPI and libclang; install them (e.g. sudo apt-get install libopenmpi-dev openmpi-bin libclang-dev)"
        return 1
    fi
}

setup_libtorch() {
    if [ -n "${LIBTORCH:-}" ]; then
        if [ ! -d "$LIBTORCH/lib" ]; then
            log "error: LIBTORCH=$LIBTORCH has no lib/ directory; expected a libtorch $TORCH_VERSION install"
            return 1
        fi
        # Resolved, so LIBTORCH=.libtorch (the link below) cannot become a
        # link to itself.
        LIBTORCH="$(cd "$LIBTORCH" && pwd -P)"
        log "using LIBTORCH=$LIBTORCH"
    else
        ensure_torch
    fi
    # Only touch the link when it changes: torch-sys rebuilds (minutes) when it does.
    if [ "$(readlink "$REPO_ROOT/.libtorch" 2>/dev/null)" != "$LIBTORCH" ]; then
        ln -sfn "$LIBTORCH" "$REPO_ROOT/.libtorch"
    fi
    export LIBTORCH
}
