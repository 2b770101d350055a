#!/usr/bin/env bash
# VLM-as-a-judge reward (python -m r1v.judge_grpo): paper Fig. 5 RL baseline "VLM-as-a-judge":
# Video-R1-SFT trained on the 4k video mix with the paper's GRPO hyperparameters
# (configs/grpo_paper.yaml) and --reward_funcs judge format: a judge model behind an
# OpenAI-compatible endpoint scores each answer against the gold answer, 0-1 on a 0.1 grid, in
# place of the rule-based accuracy. As an auxiliary term instead, pass
#   --reward_funcs accuracy format judge --reward_weights 1 1 0.3
# JUDGE_BASE_URL (.../v1) and JUDGE_MODEL are required; JUDGE_API_KEY_FILE names the key file of
# an API endpoint. Text-only judging by default (--judge_num_frames N sends N frames).
# Hardware: 1 node x 8 GPUs (A100/H100 80 GB), DeepSpeed ZeRO-3, plus the judge endpoint (an API,
# or e.g. vLLM on another node). Several nodes: set NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT
# on every node (torchrun rendezvous; see launch_train.sh).
# Usage: JUDGE_BASE_URL=http://host:8000/v1 JUDGE_MODEL=name bash local_scripts/train_judge_reward.sh [--flag value ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${JUDGE_BASE_URL:?set JUDGE_BASE_URL (OpenAI-compatible base URL of the judge, .../v1)}"
: "${JUDGE_MODEL:?set JUDGE_MODEL (the judge model name)}"
export MODEL_PATH="${MODEL_PATH:-Video-R1/Qwen2.5-VL-7B-COT-SFT}"
export DATASET="${DATASET:-$ROOT/data_configs/video_r1_4k_mix.yaml}"
export OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/runs/judge_reward}"
KEY_ARGS=()
if [[ -n "${JUDGE_API_KEY_FILE:-}" ]]; then
  KEY_ARGS=(--judge_api_key_file "$JUDGE_API_KEY_FILE")
fi
exec bash "$ROOT/local_scripts/launch_train.sh" r1v.judge_grpo \
  --reward_funcs judge format \
  --judge_base_url "$JUDGE_BASE_URL" \
  --judge_model "$JUDGE_MODEL" \
  ${KEY_ARGS[@]+"${KEY_ARGS[@]}"} \
  "$@"
