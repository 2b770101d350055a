#!/usr/bin/env bash
# Start the FFR teacher patch service (FastAPI + uvicorn) that training ranks call
# for evidence patches (POST /patch; GET /health, /ready, /stats).
#
# Environment (defaults in brackets):
#   TEACHER_HOST          bind address [127.0.0.1]; use a non-loopback address only
#                         together with TEACHER_API_KEY_FILE
#   TEACHER_PORT          port [8399]
#   TEACHER_BACKEND       backend name [annotation] (patches from the data's evidence)
#   TEACHER_ALLOWED_ROOT  directory the videos must lie under (required)
#   TEACHER_API_KEY_FILE  file with the bearer token clients must send [none]
#   PYTHON                interpreter [python]
# Extra arguments go to `python -m ffr.teacher.service` unchanged, e.g.
#   TEACHER_ALLOWED_ROOT=/data/videos local_scripts/serve_teacher.sh --item-timeout-s 90
set -euo pipefail

TEACHER_HOST="${TEACHER_HOST:-127.0.0.1}"
TEACHER_PORT="${TEACHER_PORT:-8399}"
TEACHER_BACKEND="${TEACHER_BACKEND:-annotation}"
TEACHER_ALLOWED_ROOT="${TEACHER_ALLOWED_ROOT:?set TEACHER_ALLOWED_ROOT to the directory holding the training videos}"
TEACHER_API_KEY_FILE="${TEACHER_API_KEY_FILE:-}"
PYTHON="${PYTHON:-python}"

args=(--backend "${TEACHER_BACKEND}" --host "${TEACHER_HOST}" --port "${TEACHER_PORT}"
      --allowed-root "${TEACHER_ALLOWED_ROOT}")
if [[ -n "${TEACHER_API_KEY_FILE}" ]]; then
  args+=(--api-key-file "${TEACHER_API_KEY_FILE}")
fi

exec "${PYTHON}" -m ffr.teacher.service "${args[@]}" "$@"
