#!/usr/bin/env bash
# Create (once) the project's local virtual environment and print its python.
# Used by the README's demo and test commands; re-installs when setup.py changes.
# Hardware: any machine; on a CPU-only machine this installs the CPU test stack.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
EXTRAS="${EXTRAS:-test}"
PYTHON="${PYTHON:-python3}"
stamp="$VENV/.installed-$(cat "$ROOT/setup.py" | sha1sum | cut -c1-12)-$EXTRAS"
if [ ! -f "$stamp" ]; then
  echo "Installing the project into $VENV (extras: $EXTRAS); first run takes a few minutes..." >&2
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -e "$ROOT[$EXTRAS]" >&2
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
echo "$VENV/bin/python"
