#!/usr/bin/env bash
# Evaluate one checkpoint on the paper's eight benchmarks, then tabulate it.
#
# Reproduces one row of Table 2 (MMVU, VSI-Bench, VideoMMMU, Video-Holmes, LongVideoBench,
# LVBench, MVBench, TempCompass + Avg.) with the paper's settings: Video-R1 evaluation protocol,
# 16 frames at 128*28*28 pixels per frame, temperature 0.1, top_p 0.001, 1024 new tokens, seed 42.
# Table 16 rows: FRAMES=32 or FRAMES=64. Table 17 rows: SEED=123 or SEED=456 (then merge the
# three runs with `python -m eval.report RUN42 RUN123 RUN456 --labels s42,s123,s456 --mean-std --out DIR`).
#
# Hardware: one node, NPROC GPUs (default: all visible); each rank holds a full bf16 copy of the
# model (a 7B Qwen2.5-VL needs ~17 GB plus activations; A100/H100 80 GB fit --batch-size 8).
# NPROC>1 launches torchrun (data-parallel shards, merged by rank 0). A killed run is resumed by
# running the same command again.
#
# Environment (defaults in brackets):
#   MODEL_PATH   HF checkpoint folder (required)        LABEL     row name [basename of MODEL_PATH]
#   OUT_DIR      [outputs/eval/LABEL_fFRAMES_sSEED]     NPROC     [number of GPUs, else 1]
#   EVAL_DATA_DIR  parent of the benchmark folders [data/eval]; each root below defaults to
#                  $EVAL_DATA_DIR/<name>: MMVU_ROOT VSIBENCH_ROOT VIDEOMMMU_ROOT VIDEOHOLMES_ROOT
#                  LONGVIDEOBENCH_ROOT LVBENCH_ROOT MVBENCH_ROOT TEMPCOMPASS_ROOT
#   BENCHMARKS   [all eight]   PROTOCOL [video-r1]   FRAMES [16]   MAX_PIXELS [100352]
#   SEED [42]    BATCH_SIZE [8]   PYTHON [python]
# Extra arguments are passed to eval.run unchanged, e.g. --data-format-mmvu video-r1 --max-samples 50.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

gpu_count() {
  local n=0
  if command -v nvidia-smi >/dev/null 2>&1; then
    n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  fi
  echo $(( n > 0 ? n : 1 ))
}

MODEL_PATH=${MODEL_PATH:?set MODEL_PATH to an HF checkpoint folder}
LABEL=${LABEL:-$(basename "${MODEL_PATH%/}")}
PROTOCOL=${PROTOCOL:-video-r1}
FRAMES=${FRAMES:-16}
MAX_PIXELS=${MAX_PIXELS:-$((128 * 28 * 28))}
SEED=${SEED:-42}
BATCH_SIZE=${BATCH_SIZE:-8}
BENCHMARKS=${BENCHMARKS:-mmvu,vsibench,videommmu,videoholmes,longvideobench,lvbench,mvbench,tempcompass}
OUT_DIR=${OUT_DIR:-outputs/eval/${LABEL}_f${FRAMES}_s${SEED}}
NPROC=${NPROC:-$(gpu_count)}
# The paper (Video-R1 protocol) reports MMVU's multiple-choice items and TempCompass' multi-choice
# task; set MMVU_SUBSET= / TEMPCOMPASS_SUBSET= (empty) to evaluate every item instead.
MMVU_SUBSET=${MMVU_SUBSET-multiple-choice}
TEMPCOMPASS_SUBSET=${TEMPCOMPASS_SUBSET-multi-choice}
PYTHON=${PYTHON:-python}
EVAL_DATA_DIR=${EVAL_DATA_DIR:-data/eval}
MMVU_ROOT=${MMVU_ROOT:-$EVAL_DATA_DIR/mmvu}
VSIBENCH_ROOT=${VSIBENCH_ROOT:-$EVAL_DATA_DIR/vsibench}
VIDEOMMMU_ROOT=${VIDEOMMMU_ROOT:-$EVAL_DATA_DIR/videommmu}
VIDEOHOLMES_ROOT=${VIDEOHOLMES_ROOT:-$EVAL_DATA_DIR/videoholmes}
LONGVIDEOBENCH_ROOT=${LONGVIDEOBENCH_ROOT:-$EVAL_DATA_DIR/longvideobench}
LVBENCH_ROOT=${LVBENCH_ROOT:-$EVAL_DATA_DIR/lvbench}
MVBENCH_ROOT=${MVBENCH_ROOT:-$EVAL_DATA_DIR/mvbench}
TEMPCOMPASS_ROOT=${TEMPCOMPASS_ROOT:-$EVAL_DATA_DIR/tempcompass}

args=(
  --model "$MODEL_PATH" --label "$LABEL" --out "$OUT_DIR" --benchmarks "$BENCHMARKS"
  --protocol "$PROTOCOL" --frames "$FRAMES" --max-pixels "$MAX_PIXELS" --seed "$SEED"
  --batch-size "$BATCH_SIZE"
  --temperature 0.1 --top-p 0.001 --max-new-tokens 1024
  --data-root-mmvu "$MMVU_ROOT" --data-root-vsibench "$VSIBENCH_ROOT"
  --data-root-videommmu "$VIDEOMMMU_ROOT" --data-root-videoholmes "$VIDEOHOLMES_ROOT"
  --data-root-longvideobench "$LONGVIDEOBENCH_ROOT" --data-root-lvbench "$LVBENCH_ROOT"
  --data-root-mvbench "$MVBENCH_ROOT" --data-root-tempcompass "$TEMPCOMPASS_ROOT"
  ${MMVU_SUBSET:+--subset-mmvu "$MMVU_SUBSET"}
  ${TEMPCOMPASS_SUBSET:+--subset-tempcompass "$TEMPCOMPASS_SUBSET"}
  "$@"
)

echo "evaluating $MODEL_PATH -> $OUT_DIR ($NPROC process(es))"
if [ "$NPROC" -gt 1 ]; then
  "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m eval.run "${args[@]}"
else
  "$PYTHON" -m eval.run "${args[@]}"
fi
"$PYTHON" -m eval.report "$OUT_DIR" --out "$OUT_DIR/report"
