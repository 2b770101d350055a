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
MODEL_PATH="${MODEL_PATH:-Video-R1/Qwen2.5-VL-7B-COT-SFT}"
DATASET="${DATASET:-$ROOT/data_configs/video_r1_4k_mix.yaml}"
OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/runs/ffr_video_r1_sft}"
TEACHER_URL="${TEACHER_URL:-http://127.0.0.1:8399}"
TEACHER_API_KEY_FILE="${TEACHER_API_KEY_FILE:-}"
PATCH_TAX="${PATCH_TAX:-0.3}"
NPROC_PER_NODE="${NPROC_PER_NODE:-8}"
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
MASTER_PORT="${MASTER_PORT:-29500}"
DS_CONFIG="${DS_CONFIG:-$ROOT/local_scripts/zero3.json}"
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

mkdir -p "$OUTPUT_DIR"
"$PYTHON" -m torch.distributed.run \
  --nproc_per_node "$NPROC_PER_NODE" --nnodes "$NNODES" --node_rank "$NODE_RANK" \
  --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
  -m ffr.train \
  --config "$ROOT/local_scripts/configs/grpo_paper.yaml" \
  --deepspeed "$DS_CONFIG" \
  --model_name_or_path "$MODEL_PATH" \
  --dataset_name "$DATASET" \
  --output_dir "$OUTPUT_DIR" \
  --run_name "$(basename "$OUTPUT_DIR")" \
  --ffr_enable true \
  --ffr_patch_tax "$PATCH_TAX" \
  --ffr_patch_log true \
  --teacher_url "$TEACHER_URL" \
  "${key_args[@]}" \
  "$@" 2>&1 | tee -a "$OUTPUT_DIR/train.log"
