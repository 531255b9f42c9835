#!/usr/bin/env bash
# Creates .venv and installs headrace into it, building the Rust extension from
# source with the machine's toolchain. Usage: scripts/bootstrap.sh [extras]
#   extras: "" (runtime only) or "test" (pytest, hypothesis, mypy, ...)
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
PYTHON="${PYTHON:-python3}"

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "error: '$1' is required ($2)" >&2; exit 1; }
}
need "$PYTHON" "Python 3.11 or newer"
need cargo "the Rust toolchain (rustup) builds headrace's core"

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"error: Python 3.11 or newer is required, found {sys.version.split()[0]}")
PY

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
spec="."
if [ -n "$extras" ]; then spec=".[${extras}]"; fi
# Not editable: the tests exercise the installed wheel, as users get it.
.venv/bin/python -m pip install --quiet "$spec"
echo "headrace installed in .venv ($(.venv/bin/python -c 'import headrace; print(headrace.__version__)'))"
