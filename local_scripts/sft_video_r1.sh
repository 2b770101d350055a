#!/usr/bin/env bash
# SFT of the student on CoT data (python -m r1v.sft; assistant-only loss, the GRPO frame policy).
# Paper rows: Table 3 "w./ SFT" (Qwen2.5-VL-7B-Instruct on Video-R1-COT-165k = the Video-R1-SFT
# starting point of Tables 2-4, 7, 12); Table 4 / 11 "SFT (Qwen3-32B)" and "SFT (Qwen3-235B)" with
# DATASET = the kept teacher traces of traces_qwen3_32b.sh / traces_qwen3_235b.sh and MODEL_PATH =
# Video-R1-SFT; Table 14 "Qwen2.5-VL-3B-SFT" with MODEL_PATH=Qwen/Qwen2.5-VL-3B-Instruct.
# Hyperparameters: configs/sft_video_r1.yaml (Video-R1's SFT recipe). Hardware: 1 node x 8 GPUs
# (A100/H100 80 GB), DeepSpeed ZeRO-2 (DS_CONFIG=local_scripts/zero3.json for ZeRO-3); several
# nodes: set NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT on every node (see launch_train.sh).
# Usage: bash local_scripts/sft_video_r1.sh [--any_config_field value ...]
#   DATASET=data/sft_teacher/qwen3_32b.jsonl MODEL_PATH=Video-R1/Qwen2.5-VL-7B-COT-SFT \
#   OUTPUT_DIR=runs/sft_qwen3_32b bash local_scripts/sft_video_r1.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MODEL_PATH="${MODEL_PATH:-Qwen/Qwen2.5-VL-7B-Instruct}"
export DATASET="${DATASET:-$ROOT/data/Video-R1/Video-R1-COT-165k.json}"
export OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/runs/sft_video_r1}"
export DS_CONFIG="${DS_CONFIG:-$ROOT/local_scripts/zero2.json}"
export TRAIN_CONFIG="${TRAIN_CONFIG:-$ROOT/local_scripts/configs/sft_video_r1.yaml}"
exec bash "$ROOT/local_scripts/launch_train.sh" r1v.sft "$@"
