#!/usr/bin/env bash
# Installs everything the test suite needs and runs all of it: the Rust core's
# cargo tests, then pytest (which includes mypy --strict and stubtest).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh test

echo "== PostgreSQL (for the checkpoint tests)"
HEADRACE_TEST_POSTGRES="$(scripts/postgres.sh start)"
export HEADRACE_TEST_POSTGRES
trap 'scripts/postgres.sh stop' EXIT
echo "== Kafka broker (for the stream source tests)"
HEADRACE_TEST_KAFKA="$(scripts/kafka.sh start)"
export HEADRACE_TEST_KAFKA
trap 'scripts/postgres.sh stop; scripts/kafka.sh stop' EXIT

echo "== cargo test (headrace-core)"
cargo test --quiet -p headrace-core

echo "== pytest"
# `python -m pytest` from the repo root; the package under test is the installed one.
.venv/bin/python -m pytest "$@"
