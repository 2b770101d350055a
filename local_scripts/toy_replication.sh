#!/usr/bin/env bash
# "Does it learn?" (README): GRPO vs FFR (annotation teacher over the real HTTP service) vs T-GRPO
# on the toy world, 3 seeds, from one cached warm start; writes results.json / results.md /
# results.png next to the runs. Reproduces experiments/toy/v2/ (protocol_v2.yaml) from its committed
# warm student; WARM_STUDENT= (empty) builds the protocol's warm start instead (a one-time ~6 minutes).
# PROTOCOL=experiments/toy/protocol_v4.yaml runs the paper's Fig. 5 baselines (LUFFY, Replay, majority
# vote, judge reward) next to GRPO and FFR from the same student (experiments/toy/v4/).
# Hardware: any CPU; 2 cores run protocol v2 in about 40 minutes, v4 in about 75.
# Usage: bash local_scripts/toy_replication.sh [--seeds 0 1 2 3 4] [--jobs 2]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$(bash "$ROOT/local_scripts/setup_env.sh")}"
PROTOCOL="${PROTOCOL:-$ROOT/experiments/toy/protocol_v2.yaml}"
WARM_STUDENT="${WARM_STUDENT-$ROOT/experiments/toy/v2/warm_student}"
name="${PROTOCOL##*/}"; name="${name%.yaml}"
OUT="${TOY_OUT:-$ROOT/runs/toy_${name#protocol_}}"
CACHE="${TOY_CACHE:-$ROOT/.cache/toy}"
# Tiny models run fastest single-threaded; the runs go in parallel instead (--jobs).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
cd "$ROOT"
warm=()
[ -n "$WARM_STUDENT" ] && warm=(--warm-student "$WARM_STUDENT")
exec "$PY" -m r1v.toy.replicate --protocol "$PROTOCOL" --out "$OUT" --cache "$CACHE" "${warm[@]}" "$@"
