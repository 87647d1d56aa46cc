#!/usr/bin/env bash
# Installs the tools the tests need when they are missing. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }

if ! python3 -c "import numpy" >/dev/null 2>&1; then
    echo "setup: installing numpy for the Python tests"
    python3 -m pip install --quiet numpy
fi
