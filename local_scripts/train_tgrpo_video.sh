#!/usr/bin/env bash
# T-GRPO (Video-R1's temporal GRPO; python -m r1v.tgrpo): paper Table 3 row "w./ SFT + w./ T-GRPO
# (Video-R1)": Video-R1-SFT trained on the 4k video mix with the paper's GRPO hyperparameters
# (configs/grpo_paper.yaml), plus G/2 = 4 rollouts on shuffled frames per video prompt, the +0.3
# temporal bonus (ordered accuracy >= 0.8 x shuffled accuracy) and Video-R1's length control
# (--len_control true, as its run_grpo_video.sh; pass --len_control false to drop it).
# Hardware: 1 node x 8 GPUs (A100/H100 80 GB), DeepSpeed ZeRO-3. Several nodes: set NNODES,
# NODE_RANK, MASTER_ADDR and MASTER_PORT on every node (torchrun rendezvous; see launch_train.sh).
# Usage: bash local_scripts/train_tgrpo_video.sh [--any_config_field value ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MODEL_PATH="${MODEL_PATH:-Video-R1/Qwen2.5-VL-7B-COT-SFT}"
export DATASET="${DATASET:-$ROOT/data_configs/video_r1_4k_mix.yaml}"
export OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/runs/tgrpo_video}"
exec bash "$ROOT/local_scripts/launch_train.sh" r1v.tgrpo \
  --temporal true \
  --len_control true \
  "$@"
