#!/usr/bin/env bash
# LUFFY (Yan et al., 2025; python -m r1v.luffy): paper Fig. 5 row "LUFFY": Video-R1-SFT trained on
# the 4k video mix with the paper's GRPO hyperparameters (configs/grpo_paper.yaml), where each group
# of G = 8 holds 7 rollouts and 1 teacher trace of the prompt (--luffy_num_traces 1), teacher tokens
# trained with -A * f(pi), f(p) = p / (p + 0.1), unclipped; no KL (--beta 0.0 overrides the config's).
# TRACES is a JSONL of teacher traces written by `python -m r1v.teacher_traces` (default: the
# Qwen3-VL-235B traces of traces_qwen3_235b.sh); traces are cut at max_completion_length (1024).
# Defaults follow the LUFFY paper (std-normalised advantages over the mixed group, PPO clip on
# on-policy tokens). The released script's choices instead: --luffy_std_normalize false
# --luffy_clip_on_policy false --luffy_entropy_coeff 0.001 --loss_type dr_grpo; statistics from
# on-policy rows only: --luffy_advantage split.
# Hardware: 1 node x 8 GPUs (A100/H100 80 GB), DeepSpeed ZeRO-3. Several nodes: set NNODES,
# NODE_RANK, MASTER_ADDR and MASTER_PORT on every node (torchrun rendezvous; see launch_train.sh).
# Usage: TRACES=data/sft_teacher/qwen3_235b.jsonl bash local_scripts/train_luffy.sh [--any_config_field value ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MODEL_PATH="${MODEL_PATH:-Video-R1/Qwen2.5-VL-7B-COT-SFT}"
export DATASET="${DATASET:-$ROOT/data_configs/video_r1_4k_mix.yaml}"
export OUTPUT_DIR="${OUTPUT_DIR:-$ROOT/runs/luffy_video}"
TRACES="${TRACES:-$ROOT/data/sft_teacher/qwen3_235b.jsonl}"
exec bash "$ROOT/local_scripts/launch_train.sh" r1v.luffy \
  --luffy_traces "$TRACES" \
  --luffy_num_traces 1 \
  --beta 0.0 \
  "$@"
