#!/usr/bin/env bash
# Ablation, paper Table 3 row "w./ FFR (no visual context)": the patch shown to the student keeps
# error focus, temporal markers and guidance but drops key-frame indices and spatial regions.
# Base Video-R1-SFT, lambda 0.3. Hardware: 1 node x 8 GPUs (A100/H100 80 GB), DeepSpeed ZeRO-3;
# teacher at $TEACHER_URL.
# Usage: TEACHER_URL=http://teacher:8399 bash local_scripts/train_ffr_no_visual_context.sh [--any_config_field value ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MODEL_PATH="${MODEL_PATH:-Video-R1/Qwen2.5-VL-7B-COT-SFT}"
export OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/runs/ffr_no_visual_context}"
export TEACHER_URL="${TEACHER_URL:-http://127.0.0.1:8399}"
exec bash "$ROOT/local_scripts/train_ffr_video_r1_sft.sh" --ffr_visual_context false "$@"
