#!/usr/bin/env bash
# The README's demo: the main job end to end on the embedded tiny setup, on a CPU, in minutes.
#   1. a random-weight Qwen2.5-VL checkpoint and a synthetic video-QA set are written locally;
#   2. GRPO trains the tiny student for a few steps (same code path as the 8-GPU paper runs);
#   3. the trained checkpoint is evaluated on small fixtures of all eight benchmarks and
#      tabulated like the paper's Table 2.
# Hardware: any CPU (2 cores is enough). Outputs go to $DEMO_OUT (default: ./demo_out).
# Extra arguments are passed to the trainer, e.g. `bash local_scripts/demo.sh --max_steps 10`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$(bash "$ROOT/local_scripts/setup_env.sh")"
OUT="${DEMO_OUT:-$ROOT/demo_out}"
# Tiny models run fastest single-threaded on a small machine.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
cd "$ROOT"
start=$(date +%s)
rm -rf "$OUT"
mkdir -p "$OUT"

echo "== 1/3 tiny checkpoint and synthetic data =="
"$PY" -m r1v.tiny --out "$OUT/tiny-qwen2_5_vl" --arch qwen2_5_vl
"$PY" -m r1v.synthetic --out "$OUT/synthetic" --n 32 --seed 0

echo "== 2/3 GRPO training =="
"$PY" -m r1v.grpo --config local_scripts/configs/demo_tiny.yaml \
  --model_name_or_path "$OUT/tiny-qwen2_5_vl" \
  --dataset_name "$OUT/synthetic/train.jsonl" \
  --output_dir "$OUT/grpo" "$@"
"$PY" - "$OUT/grpo/metrics.jsonl" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
keys = ["step", "loss", "reward", "rewards/accuracy", "rewards/format", "kl", "completion_length", "timing_s/generate"]
print(" | ".join(keys))
for r in rows:
    print(" | ".join(f"{r.get(k):.4g}" if isinstance(r.get(k), float) else str(r.get(k)) for k in keys))
PYEOF

echo "== 3/3 evaluation of the trained checkpoint on the eight benchmark fixtures =="
"$PY" -m eval.fixtures --out "$OUT/eval_data" > /dev/null
MODEL_PATH="$OUT/grpo" LABEL="tiny-grpo-demo" OUT_DIR="$OUT/eval" EVAL_DATA_DIR="$OUT/eval_data" \
  PYTHON="$PY" NPROC=1 BATCH_SIZE=4 FRAMES=4 MAX_PIXELS=3136 \
  bash eval/run_all.sh --max-new-tokens 16 --log-level WARNING
echo "Demo finished in $(( $(date +%s) - start )) s. Outputs: $OUT (checkpoint: $OUT/grpo, report: $OUT/eval/report)"
