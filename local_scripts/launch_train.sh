#!/usr/bin/env bash
# Shared torchrun launcher of the training scripts (train_grpo_video.sh, train_ffr_*.sh,
# train_tgrpo_video.sh, train_luffy.sh, train_replay.sh, train_majority_vote.sh, train_judge_reward.sh,
# sft_video_r1.sh); not a table row of its own.
# Usage: bash local_scripts/launch_train.sh MODULE [trainer flags ...]
# MODULE is the entry point (r1v.grpo, ffr.train, r1v.tgrpo, r1v.luffy, r1v.replay, r1v.judge_grpo or r1v.sft). The calling script sets
# MODEL_PATH, DATASET and OUTPUT_DIR; the node layout comes from NPROC_PER_NODE (8), NNODES (1),
# NODE_RANK (0), MASTER_ADDR and MASTER_PORT; DS_CONFIG (ZeRO-3) and PYTHON may be overridden.
# Every run starts from TRAIN_CONFIG (default configs/grpo_paper.yaml, paper App. D.4; SFT sets
# configs/sft_video_r1.yaml); later flags override it. Output is appended to $OUTPUT_DIR/train.log.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODULE="${1:?usage: launch_train.sh MODULE [trainer flags ...]}"
shift
: "${MODEL_PATH:?set MODEL_PATH}" "${DATASET:?set DATASET}" "${OUTPUT_DIR:?set OUTPUT_DIR}"
NPROC_PER_NODE="${NPROC_PER_NODE:-8}"
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
MASTER_PORT="${MASTER_PORT:-29500}"
DS_CONFIG="${DS_CONFIG:-$ROOT/local_scripts/zero3.json}"
TRAIN_CONFIG="${TRAIN_CONFIG:-$ROOT/local_scripts/configs/grpo_paper.yaml}"
PYTHON="${PYTHON:-python}"

mkdir -p "$OUTPUT_DIR"
"$PYTHON" -m torch.distributed.run \
  --nproc_per_node "$NPROC_PER_NODE" --nnodes "$NNODES" --node_rank "$NODE_RANK" \
  --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
  -m "$MODULE" \
  --config "$TRAIN_CONFIG" \
  --deepspeed "$DS_CONFIG" \
  --model_name_or_path "$MODEL_PATH" \
  --dataset_name "$DATASET" \
  --output_dir "$OUTPUT_DIR" \
  --run_name "$(basename "$OUTPUT_DIR")" \
  "$@" 2>&1 | tee -a "$OUTPUT_DIR/train.log"
