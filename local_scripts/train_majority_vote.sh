#!/usr/bin/env bash
# Majority vote (TTRL-style label-free reward; python -m r1v.grpo): paper Fig. 5 RL baseline
# "Majority vote": Video-R1-SFT trained on the 4k video mix with the paper's GRPO hyperparameters
# (configs/grpo_paper.yaml) and --reward_funcs majority_vote format: a rollout earns 1 when its
# <answer> matches the most common answer of its group's G = 8 on-policy rollouts (no gold answer
# is used; it is read only for the rewards/majority_label_acc metric).
# Hardware: 1 node x 8 GPUs (A100/H100 80 GB), DeepSpeed ZeRO-3. Several nodes: set NNODES,
# NODE_RANK, MASTER_ADDR and MASTER_PORT on every node (torchrun rendezvous; see launch_train.sh).
# Usage: bash local_scripts/train_majority_vote.sh [--any_config_field value ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MODEL_PATH="${MODEL_PATH:-Video-R1/Qwen2.5-VL-7B-COT-SFT}"
export DATASET="${DATASET:-$ROOT/data_configs/video_r1_4k_mix.yaml}"
export OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/runs/majority_vote}"
exec bash "$ROOT/local_scripts/launch_train.sh" r1v.grpo \
  --reward_funcs majority_vote format \
  "$@"
