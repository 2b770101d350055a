#!/usr/bin/env bash
# Run the CPU test suite (the README's test command). Installs into .venv on first use.
# GPU-marked tests are skipped on machines without CUDA.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$(bash "$ROOT/local_scripts/setup_env.sh")"
cd "$ROOT"
# One thread per process: tiny-model steps are ~10x slower when two threads contend for 2 cores.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "$PY" -m pytest tests -q "$@"
