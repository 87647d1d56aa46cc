#!/usr/bin/env bash
# Runs every test of the project: Rust unit/integration tests (reference vectors, properties,
# the C API input matrix, concurrency), the C/C++/Python callers, sanitizers, valgrind, and the
# install tests. Installs what the tests need when it is missing (see scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --release --all-targets
