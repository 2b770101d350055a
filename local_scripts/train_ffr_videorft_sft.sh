#!/usr/bin/env bash
# FFR on VideoRFT-SFT: paper Table 2, row "FFR" under VideoRFT-SFT. Same recipe as the
# Video-R1-SFT row (lambda 0.3, full evidence, teacher with gold answer), other base checkpoint.
# Hardware: 1 node x 8 GPUs (A100/H100 80 GB), DeepSpeed ZeRO-3; teacher at $TEACHER_URL.
# Usage: TEACHER_URL=http://teacher:8399 bash local_scripts/train_ffr_videorft_sft.sh [--any_config_field value ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MODEL_PATH="${MODEL_PATH:-QiWang98/VideoRFT-SFT}"
export OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/runs/ffr_videorft_sft}"
export TEACHER_URL="${TEACHER_URL:-http://127.0.0.1:8399}"
exec bash "$ROOT/local_scripts/train_ffr_video_r1_sft.sh" "$@"
