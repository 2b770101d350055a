#!/usr/bin/env bash
# Patch-tax sensitivity, paper Fig. 7 / App. Table 12: one row per lambda in {0.1, 0.3, 0.5, 0.7, 1.0}
# (Eq. 8); run this script once per value, e.g. PATCH_TAX=0.7. lambda 0.3 is the full model.
# Base Video-R1-SFT. Hardware: 1 node x 8 GPUs (A100/H100 80 GB), DeepSpeed ZeRO-3; teacher at $TEACHER_URL.
# Usage: PATCH_TAX=0.5 TEACHER_URL=http://teacher:8399 bash local_scripts/train_ffr_patch_tax.sh [--any_config_field value ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATCH_TAX="${PATCH_TAX:-0.3}"
case "$PATCH_TAX" in
  0.1|0.3|0.5|0.7|1.0) ;;
  *) echo "PATCH_TAX=$PATCH_TAX is not one of the paper's values (0.1 0.3 0.5 0.7 1.0); running it anyway" >&2 ;;
esac
export MODEL_PATH="${MODEL_PATH:-Video-R1/Qwen2.5-VL-7B-COT-SFT}"
export OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/runs/ffr_patch_tax_$PATCH_TAX}"
export TEACHER_URL="${TEACHER_URL:-http://127.0.0.1:8399}"
exec bash "$ROOT/local_scripts/train_ffr_video_r1_sft.sh" "$@"
