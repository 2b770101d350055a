#!/usr/bin/env bash
# Vanilla GRPO (paper Eq. 1-2; the "GRPO" baseline rows of Tables 2 and 5) on the 4k video mix.
# Hardware: 1 node x 8 GPUs (A100/H100 80 GB), DeepSpeed ZeRO-3. Several nodes: set NNODES,
# NODE_RANK, MASTER_ADDR and MASTER_PORT on every node (torchrun rendezvous; see launch_train.sh).
# Usage: bash local_scripts/train_grpo_video.sh [--any_config_field value ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MODEL_PATH="${MODEL_PATH:-Qwen/Qwen2.5-VL-7B-Instruct}"
export DATASET="${DATASET:-$ROOT/data_configs/video_r1_4k_mix.yaml}"
export OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/runs/grpo_video}"
exec bash "$ROOT/local_scripts/launch_train.sh" r1v.grpo "$@"
