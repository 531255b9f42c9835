#!/usr/bin/env bash
# Installs headrace and runs the quick-start example graph (embedded, in-process).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/python examples/quickstart.py
