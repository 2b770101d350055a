#!/usr/bin/env bash
# FFR on Video-R1-SFT: paper Table 2, row "FFR" under Video-R1-SFT (= Table 3 "Full model"):
# GLM-4.5V-class teacher behind $TEACHER_URL, patch tax lambda 0.3, key frames + regions shown,
# teacher sees the gold answer. Paper hyperparameters from configs/grpo_paper.yaml (App. D.4).
# Hardware: 1 node x 8 GPUs (A100/H100 80 GB), DeepSpeed ZeRO-3; the teacher runs elsewhere
# (local_scripts/serve_teacher.sh or any host serving POST /patch). Several nodes: set NNODES,
# NODE_RANK, MASTER_ADDR and MASTER_PORT on every node (torchrun rendezvous).
# The other FFR rows (VideoRFT-SFT, ablations, patch-tax sweep) call this script with extra flags.
# Usage: TEACHER_URL=http://teacher:8399 bash local_scripts/train_ffr_video_r1_sft.sh [--any_config_field value ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MODEL_PATH="${MODEL_PATH:-Video-R1/Qwen2.5-VL-7B-COT-SFT}"
export DATASET="${DATASET:-$ROOT/data_configs/video_r1_4k_mix.yaml}"
export OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/runs/ffr_video_r1_sft}"
TEACHER_URL="${TEACHER_URL:-http://127.0.0.1:8399}"
TEACHER_API_KEY_FILE="${TEACHER_API_KEY_FILE:-}"
PATCH_TAX="${PATCH_TAX:-0.3}"
PYTHON="${PYTHON:-python}"
CHECK_TEACHER="${CHECK_TEACHER:-1}"

if [[ "$CHECK_TEACHER" == "1" ]]; then
  # Fail fast on a wrong URL; during training a teacher fault only means "no patch".
  "$PYTHON" -c 'import sys, requests; requests.get(sys.argv[1].rstrip("/") + "/health", timeout=10).raise_for_status()' \
    "$TEACHER_URL" || { echo "teacher not reachable at $TEACHER_URL (set TEACHER_URL, or CHECK_TEACHER=0)" >&2; exit 1; }
fi
key_args=()
if [[ -n "$TEACHER_API_KEY_FILE" ]]; then
  key_args=(--teacher_api_key_file "$TEACHER_API_KEY_FILE")  # a file keeps the key out of argv and logs
fi

exec bash "$ROOT/local_scripts/launch_train.sh" ffr.train \
  --ffr_enable true \
  --ffr_patch_tax "$PATCH_TAX" \
  --ffr_patch_log true \
  --teacher_url "$TEACHER_URL" \
  "${key_args[@]}" \
  "$@"
