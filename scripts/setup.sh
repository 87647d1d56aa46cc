#!/usr/bin/env bash
# Installs the tools the tests need when they are missing. Safe to run repeatedly.
#   numpy              the Python (ctypes) tests
#   cmake, pkg-config  tests/install.rs (find_package and pkg-config users of the installed library)
#   valgrind           tests/c_callers.rs (the C/C++ examples under valgrind)
#   cargo-c            tests/install.rs (`cargo cinstall`); pinned to the last release that builds
#                      with the stable toolchain used here; takes ~7 minutes on 2 cores, once.
# The C/C++ compilers (gcc/g++ with the ASan/UBSan runtimes) are expected to be present.
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }

if ! python3 -c "import numpy" >/dev/null 2>&1; then
    echo "setup: installing numpy for the Python tests"
    python3 -m pip install --quiet numpy
fi

apt_missing=()
have cmake || apt_missing+=(cmake)
have pkg-config || apt_missing+=(pkg-config)
have valgrind || apt_missing+=(valgrind)
if ((${#apt_missing[@]})); then
    echo "setup: installing ${apt_missing[*]} with apt-get"
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if have sudo; then sudo=(sudo); else
            echo "setup: not root and no sudo: install ${apt_missing[*]} yourself" >&2
            exit 1
        fi
    fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi

if ! cargo cinstall --version >/dev/null 2>&1; then
    echo "setup: installing cargo-c (cargo cinstall); this takes several minutes"
    cargo install --locked cargo-c --version 0.10.24+cargo-0.98.0
fi

echo "setup: python3 $(python3 -c 'import sys, numpy; print(sys.version.split()[0], "numpy", numpy.__version__)')"
echo "setup: $(cmake --version | head -n1)"
echo "setup: pkg-config $(pkg-config --version)"
echo "setup: $(valgrind --version)"
echo "setup: $(cargo cinstall --version 2>/dev/null | head -n1)"
echo "setup: $(cc --version | head -n1)"
