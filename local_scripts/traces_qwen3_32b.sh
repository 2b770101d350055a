#!/usr/bin/env bash
# SFT-on-teacher traces, paper Table 4 / Table 11 row "SFT (Qwen3-32B)": the teacher answers every
# training item with a full <think>..</think><answer>..</answer> trace (the student's R1 prompt, 16
# frames as images); only traces with a correct answer are kept, as Video-R1 CoT records for
# `python -m r1v.sft` on Video-R1-SFT. The teacher is any OpenAI-compatible endpoint at $BASE_URL,
# e.g. vLLM serving Qwen3-VL-32B-Instruct on 1 node x 2-4 GPUs (80 GB, tensor parallel) with
# --limit-mm-per-prompt '{"image":16}' (frames arrive as images); this
# script itself needs no GPU. One request per training item (4k for the paper mix, ~2k prompt
# tokens each at 16 frames); wall time is set by the server (not measured here). Resumable: rerun
# the same command after an interruption; the summary counts requests, kept/dropped and tokens.
# traces_qwen3_235b.sh runs the Qwen3-235B row through this script.
# Usage: BASE_URL=http://teacher:8000/v1 bash local_scripts/traces_qwen3_32b.sh [--limit 100 ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_URL="${BASE_URL:-http://127.0.0.1:8000/v1}"
MODEL="${MODEL:-Qwen/Qwen3-VL-32B-Instruct}"
DATA="${DATA:-$ROOT/data/mix4k.jsonl}"       # the training mix (python -m r1v.prepare mix)
OUT="${OUT:-$ROOT/data/sft_teacher/qwen3_32b.jsonl}"
API_KEY_FILE="${API_KEY_FILE:-}"
MAX_TOKENS="${MAX_TOKENS:-4096}"
FRAMES="${FRAMES:-16}"
CONCURRENCY="${CONCURRENCY:-8}"
PYTHON="${PYTHON:-python}"

key_args=()
if [[ -n "$API_KEY_FILE" ]]; then
  key_args=(--api-key-file "$API_KEY_FILE")  # a file keeps the key out of argv and logs
fi
mkdir -p "$(dirname "$OUT")"
exec "$PYTHON" -m r1v.teacher_traces \
  --base-url "$BASE_URL" \
  --model "$MODEL" \
  --data "$DATA" \
  --out "$OUT" \
  --max-tokens "$MAX_TOKENS" \
  --max-frames "$FRAMES" \
  --concurrency "$CONCURRENCY" \
  "${key_args[@]}" \
  "$@"
