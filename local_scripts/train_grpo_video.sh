#!/usr/bin/env bash
# Vanilla GRPO (paper Eq. 1-2; the "GRPO" baseline rows of Tables 2 and 5) on the 4k video mix.
# Hardware: 1 node x 8 GPUs (A100/H100 80 GB), DeepSpeed ZeRO-3. Several nodes: set NNODES,
# NODE_RANK, MASTER_ADDR and MASTER_PORT on every node (torchrun rendezvous).
# Usage: bash local_scripts/train_grpo_video.sh [--any_config_field value ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODEL_PATH="${MODEL_PATH:-Qwen/Qwen2.5-VL-7B-Instruct}"
DATASET="${DATASET:-$ROOT/data_configs/video_r1_4k_mix.yaml}"
OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/runs/grpo_video}"
NPROC_PER_NODE="${NPROC_PER_NODE:-8}"
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
MASTER_PORT="${MASTER_PORT:-29500}"
DS_CONFIG="${DS_CONFIG:-$ROOT/local_scripts/zero3.json}"
PYTHON="${PYTHON:-python}"

mkdir -p "$OUTPUT_DIR"
"$PYTHON" -m torch.distributed.run \
  --nproc_per_node "$NPROC_PER_NODE" --nnodes "$NNODES" --node_rank "$NODE_RANK" \
  --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
  -m r1v.grpo \
  --config "$ROOT/local_scripts/configs/grpo_paper.yaml" \
  --deepspeed "$DS_CONFIG" \
  --model_name_or_path "$MODEL_PATH" \
  --dataset_name "$DATASET" \
  --output_dir "$OUTPUT_DIR" \
  --run_name "$(basename "$OUTPUT_DIR")" \
  "$@" 2>&1 | tee -a "$OUTPUT_DIR/train.log"
