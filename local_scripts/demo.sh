#!/usr/bin/env bash
# The README's demo: the main job (FFR training, then evaluation) end to end on the embedded
# tiny setup, on a CPU, in minutes:
#   1. a tiny Qwen2.5-VL checkpoint (random weights + a short format warm-up, so rewards vary)
#      and a synthetic video-QA set with evidence annotations are written locally;
#   2. the teacher service starts on loopback with the annotation backend (patches from the
#      data's evidence); it is stopped when the script exits, also on failure;
#   3. FFR trains the student for a few steps (same code path as the 8-GPU paper runs) and the
#      FFR metrics are printed, with the paper's Fig. 4 drawn as a PNG and the patch inspector
#      (one HTML page of every teacher request) written, its path printed;
#   4. the trained checkpoint is evaluated on small fixtures of all eight benchmarks and
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

echo "== 1/4 tiny checkpoint (with format warm-up) and synthetic data =="
"$PY" -m r1v.toy.tiny --out "$OUT/tiny-qwen2_5_vl" --arch qwen2_5_vl --warmup-steps 120
"$PY" -m r1v.toy.synthetic --out "$OUT/synthetic" --n 32 --seed 0

echo "== 2/4 teacher service (annotation backend) on loopback =="
# --port 0: the service binds a free port itself and writes it to teacher.port once listening
# (a port picked here and bound there could be taken by another process in between).
"$PY" -m ffr.teacher.service --backend annotation --host 127.0.0.1 --port 0 --port-file "$OUT/teacher.port" \
  --allowed-root "$OUT/synthetic" --log-level warning > "$OUT/teacher.log" 2>&1 &
TEACHER_PID=$!
trap 'kill "$TEACHER_PID" 2>/dev/null || true; wait "$TEACHER_PID" 2>/dev/null || true' EXIT
"$PY" - "$OUT/teacher.port" "$TEACHER_PID" <<'PYEOF'
import os, sys, time, requests
port_file, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 180  # start-up takes seconds on a quiet machine, far longer on a loaded one
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("teacher service exited; see teacher.log")
    try:
        if os.path.exists(port_file):
            url = f"http://127.0.0.1:{int(open(port_file).read())}"
            if requests.get(url + "/ready", timeout=1).ok:
                sys.exit(0)
    except requests.RequestException:  # refused while starting, or a read timeout on a loaded machine
        pass
    time.sleep(0.2)
sys.exit("teacher service did not come up; see teacher.log")
PYEOF
PORT="$(cat "$OUT/teacher.port")"

echo "== 3/4 FFR training =="
"$PY" -m ffr.train --config local_scripts/configs/demo_tiny.yaml \
  --model_name_or_path "$OUT/tiny-qwen2_5_vl" \
  --dataset_name "$OUT/synthetic/train.jsonl" \
  --output_dir "$OUT/ffr" \
  --ffr_enable true --ffr_patch_log true \
  --teacher_url "http://127.0.0.1:$PORT" "$@"
"$PY" - "$OUT/ffr/metrics.jsonl" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
keys = ["step", "loss", "reward", "rewards/accuracy", "rewards/format", "ffr/intervention_ratio", "ffr/fix_rate",
        "ffr/chosen_patched_frac", "teacher/latency_s_p50"]
print(" | ".join(keys))
for r in rows:
    print(" | ".join(f"{r[k]:.3g}" if isinstance(r.get(k), float) else str(r.get(k, "-")) for k in keys))
PYEOF
"$PY" -m ffr.plot "$OUT/ffr"
# The patch inspector: one static page with every teacher request (frames, boxes, evidence, answers).
"$PY" -m ffr.inspect "$OUT/ffr" --out "$OUT/ffr/patch_inspector.html"

echo "== 4/4 evaluation of the trained checkpoint on the eight benchmark fixtures =="
"$PY" -m eval.fixtures --out "$OUT/eval_data" > /dev/null
MODEL_PATH="$OUT/ffr" LABEL="tiny-ffr-demo" OUT_DIR="$OUT/eval" EVAL_DATA_DIR="$OUT/eval_data" \
  PYTHON="$PY" NPROC=1 BATCH_SIZE=4 FRAMES=4 MAX_PIXELS=3136 \
  bash eval/run_all.sh --max-new-tokens 24 --log-level WARNING
echo "Demo finished in $(( $(date +%s) - start )) s. Outputs: $OUT (checkpoint: $OUT/ffr, patch log: $OUT/ffr/patch_log," \
  "Fig. 4: $OUT/ffr/fig4_intervention.png, patch inspector: $OUT/ffr/patch_inspector.html," \
  "report: $OUT/eval/report/table2.md)"
