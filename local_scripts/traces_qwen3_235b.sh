#!/usr/bin/env bash
# SFT-on-teacher traces, paper Table 4 / Table 11 row "SFT (Qwen3-235B)": as traces_qwen3_32b.sh
# with the 235B teacher, e.g. vLLM serving Qwen3-VL-235B-A22B-Instruct on 1 node x 8 GPUs (80 GB;
# FP8 on H100). Same environment variables and passthrough flags as traces_qwen3_32b.sh.
# Usage: BASE_URL=http://teacher:8000/v1 bash local_scripts/traces_qwen3_235b.sh [--limit 100 ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MODEL="${MODEL:-Qwen/Qwen3-VL-235B-A22B-Instruct}"
export OUT="${OUT:-$ROOT/data/sft_teacher/qwen3_235b.jsonl}"
exec bash "$ROOT/local_scripts/traces_qwen3_32b.sh" "$@"
