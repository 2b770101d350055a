#!/usr/bin/env bash
# Ablation, paper Table 3 row "w./ FFR (no GT reference)": the teacher diagnoses failures from
# video, question and the student's response only (Eq. 5, reduced package); the trainer gates
# leaks locally since the service cannot. Base Video-R1-SFT, lambda 0.3.
# Hardware: 1 node x 8 GPUs (A100/H100 80 GB), DeepSpeed ZeRO-3; teacher at $TEACHER_URL.
# Usage: TEACHER_URL=http://teacher:8399 bash local_scripts/train_ffr_no_gt.sh [--any_config_field value ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MODEL_PATH="${MODEL_PATH:-Video-R1/Qwen2.5-VL-7B-COT-SFT}"
export OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/runs/ffr_no_gt}"
export TEACHER_URL="${TEACHER_URL:-http://127.0.0.1:8399}"
exec bash "$ROOT/local_scripts/train_ffr_video_r1_sft.sh" --ffr_use_gt false "$@"
