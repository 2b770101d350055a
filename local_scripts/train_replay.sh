#!/usr/bin/env bash
# RePO replay baseline (python -m r1v.replay): paper Fig. 5 row "RePO": Video-R1-SFT trained on the
# 4k video mix with the paper's GRPO hyperparameters (configs/grpo_paper.yaml) plus RePO's replay,
# with the values of RePO's script (scripts/train_replay_grpo.slurm): highest_k, 8 replayed rollouts
# per prompt, FIFOs of 16 per prompt replayed once full, split advantages, lambda = 1, and its 3
# epochs: a prompt's FIFO fills by 8 per visit and is read before the push, so with 1 epoch (the
# paper's GRPO schedule) nothing is ever replayed; with 3 it replays in the third epoch.
# Hardware: 1 node x 8 GPUs (A100/H100 80 GB), DeepSpeed ZeRO-3. Several nodes: set NNODES,
# NODE_RANK, MASTER_ADDR and MASTER_PORT on every node (torchrun rendezvous; see launch_train.sh).
# Usage: bash local_scripts/train_replay.sh [--any_config_field value ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MODEL_PATH="${MODEL_PATH:-Video-R1/Qwen2.5-VL-7B-COT-SFT}"
export DATASET="${DATASET:-$ROOT/data_configs/video_r1_4k_mix.yaml}"
export OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/runs/replay_video}"
exec bash "$ROOT/local_scripts/launch_train.sh" r1v.replay \
  --replay_strategy highest_k \
  --replay_k 8 \
  --replay_min_cache 16 \
  --replay_max_cache 16 \
  --replay_adv_norm split \
  --replay_coef 1.0 \
  --num_train_epochs 3 \
  "$@"
