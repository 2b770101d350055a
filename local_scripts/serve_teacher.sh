#!/usr/bin/env bash
# Start the FFR teacher patch service (FastAPI + uvicorn) that training ranks call for
# evidence patches (POST /patch; GET /health, /ready, /stats). Paper Sec. 3.2 / Table 7: the
# teacher rows (GLM-4.5V, GPT-4o, Qwen3-VL-32B/235B served by vLLM) are the presets below.
# Hardware: a CPU host is enough for the service itself; the teacher model runs wherever the
# endpoint is (vLLM on its own GPU node, or a hosted API).
#
# TEACHER selects the preset [annotation]:
#   annotation   patches from the data's `evidence` fields (no model; demo and tests)
#   glm45v_api   GLM-4.5V through the Z.AI API: text action protocol (no tool calling there),
#                0-1000 boxes, no json_schema; needs TEACHER_UPSTREAM_KEY_FILE
#   gpt4o        GPT-4o through the OpenAI API: native tools + json_schema; needs TEACHER_UPSTREAM_KEY_FILE
#   vllm         any model behind `vllm serve` (GLM-4.5V, Qwen3-VL-32B/235B): native tools
#                (start vLLM with --enable-auto-tool-choice and the model's --tool-call-parser)
#
# Environment (defaults in brackets):
#   TEACHER_ALLOWED_ROOT      directory the videos must lie under (required)
#   TEACHER_HOST              bind address [127.0.0.1]; a non-loopback address needs
#                             TEACHER_API_KEY_FILE (the service refuses to start without it)
#   TEACHER_PORT              port [8399]
#   TEACHER_API_KEY_FILE      file with the bearer token training ranks must send [none]
#   TEACHER_BASE_URL          model endpoint [per preset; vllm: http://127.0.0.1:8000/v1]
#   TEACHER_MODEL             model name [glm-4.5v | gpt-4o-2024-08-06 | zai-org/GLM-4.5V]
#   TEACHER_UPSTREAM_KEY_FILE file with the model endpoint's API key, passed as --upstream-api-key-file
#                             [none; required for the APIs]
#   TEACHER_CACHE_FILE        persistent result cache (see `python -m ffr.mine`) [none]
#   JUDGE_MODEL               blind-test judge model on the same endpoint [none: gates only]
#   PYTHON                    interpreter [python]
# Frame policy flags (--fps --min-frames --max-frames --video-min-pixels --video-max-pixels
# --patch-factor, the fields of r1v.vision.VisionConfig) must match training (defaults: 2 fps,
# 4-16 frames, 128*28*28 pixels).
# Extra arguments go to `python -m ffr.teacher.service` unchanged, e.g.
#   TEACHER=vllm TEACHER_MODEL=Qwen/Qwen3-VL-32B-Instruct TEACHER_ALLOWED_ROOT=/data \
#     local_scripts/serve_teacher.sh --max-turns 5 --patch-factor 32
set -euo pipefail

TEACHER="${TEACHER:-annotation}"
TEACHER_HOST="${TEACHER_HOST:-127.0.0.1}"
TEACHER_PORT="${TEACHER_PORT:-8399}"
TEACHER_ALLOWED_ROOT="${TEACHER_ALLOWED_ROOT:?set TEACHER_ALLOWED_ROOT to the directory holding the training videos}"
TEACHER_API_KEY_FILE="${TEACHER_API_KEY_FILE:-}"
TEACHER_UPSTREAM_KEY_FILE="${TEACHER_UPSTREAM_KEY_FILE:-}"
TEACHER_CACHE_FILE="${TEACHER_CACHE_FILE:-}"
JUDGE_MODEL="${JUDGE_MODEL:-}"
PYTHON="${PYTHON:-python}"

need_key() {
  [[ -n "${TEACHER_UPSTREAM_KEY_FILE}" ]] || { echo "TEACHER=${TEACHER} needs TEACHER_UPSTREAM_KEY_FILE" >&2; exit 2; }
}

case "${TEACHER}" in
  annotation)
    preset=(--backend annotation) ;;
  glm45v_api)
    need_key
    preset=(--backend openai --base-url "${TEACHER_BASE_URL:-https://api.z.ai/api/paas/v4}"
            --model "${TEACHER_MODEL:-glm-4.5v}" --protocol text --json-mode off --box-coords norm1000
            --max-images 50) ;;
  gpt4o)
    need_key
    preset=(--backend openai --base-url "${TEACHER_BASE_URL:-https://api.openai.com/v1}"
            --model "${TEACHER_MODEL:-gpt-4o-2024-08-06}" --protocol tools --json-mode json_schema) ;;
  vllm)
    preset=(--backend openai --base-url "${TEACHER_BASE_URL:-http://127.0.0.1:8000/v1}"
            --model "${TEACHER_MODEL:-zai-org/GLM-4.5V}" --protocol tools) ;;
  *)
    echo "unknown TEACHER=${TEACHER}; choose annotation, glm45v_api, gpt4o or vllm" >&2; exit 2 ;;
esac

args=("${preset[@]}" --host "${TEACHER_HOST}" --port "${TEACHER_PORT}" --allowed-root "${TEACHER_ALLOWED_ROOT}")
[[ -n "${TEACHER_API_KEY_FILE}" ]] && args+=(--api-key-file "${TEACHER_API_KEY_FILE}")
[[ -n "${TEACHER_UPSTREAM_KEY_FILE}" ]] && args+=(--upstream-api-key-file "${TEACHER_UPSTREAM_KEY_FILE}")
[[ -n "${TEACHER_CACHE_FILE}" ]] && args+=(--cache-file "${TEACHER_CACHE_FILE}")
[[ -n "${JUDGE_MODEL}" ]] && args+=(--judge-model "${JUDGE_MODEL}")

exec "${PYTHON}" -m ffr.teacher.service "${args[@]}" "$@"
