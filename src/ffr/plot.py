"""Paper Fig. 4: intervention ratio and training accuracy over training steps, as a PNG.

Reads ``output_dir/metrics.jsonl`` (one JSON object per logging step, written by
``r1v.trainer.callbacks.JsonlLogCallback``) and draws two curves sharing the step
axis: ``ffr/intervention_ratio`` (share of first-pass rollouts sent to the teacher)
and the training accuracy, ``ffr/first_pass_accuracy`` (the student's own,
unassisted accuracy; falls back to ``rewards/accuracy`` for runs without it).
An optional moving average (``smooth``) tames per-step noise; the paper's figure
summarises early vs late training, which the legend's first/last values echo.

CLI: ``python -m ffr.plot OUTPUT_DIR [--out fig4.png] [--smooth 10]``.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")  # files only; no display on training nodes
import matplotlib.pyplot as plt  # noqa: E402

logger = logging.getLogger(__name__)

INTERVENTION_KEY = "ffr/intervention_ratio"
ACCURACY_KEYS = ("ffr/first_pass_accuracy", "rewards/accuracy")


def read_series(metrics_path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) pairs of the intervention ratio and of the training accuracy.

    Returns {"intervention": [...], "accuracy": [...]}, steps ascending. Raises
    FileNotFoundError for a missing file and ValueError naming the file and line for
    bad JSON, or naming the file when no line holds the intervention ratio.
    """
    path = Path(metrics_path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics file not found: {path}")
    intervention, accuracy = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({err.msg})") from err
            step = row.get("step")
            if step is None:
                continue
            if row.get(INTERVENTION_KEY) is not None:
                intervention.append((int(step), float(row[INTERVENTION_KEY])))
            acc = next((row[k] for k in ACCURACY_KEYS if row.get(k) is not None), None)
            if acc is not None:
                accuracy.append((int(step), float(acc)))
    if not intervention:
        raise ValueError(f"{path}: no line holds {INTERVENTION_KEY!r} (was the run trained with ffr_enable?)")
    return {"intervention": sorted(intervention), "accuracy": sorted(accuracy)}


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` values (the first points average what exists)."""
    if window < 1:
        raise ValueError(f"smooth window must be >= 1, got {window}")
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_intervention(metrics_path: str | Path, out_path: str | Path, smooth: int = 1,
                      title: Optional[str] = None) -> Path:
    """Draw Fig. 4 from ``metrics_path`` into the PNG ``out_path``; returns the written path."""
    series = read_series(metrics_path)
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=150)
    curves = [("intervention", "Intervention ratio", "tab:red", ax)]
    if series["accuracy"]:
        curves.append(("accuracy", "Training accuracy", "tab:blue", ax.twinx()))
    for key, label, color, axis in curves:
        steps = [s for s, _ in series[key]]
        values = [100.0 * v for v in moving_average([v for _, v in series[key]], smooth)]
        axis.plot(steps, values, color=color, label=f"{label} ({values[0]:.1f}% \u2192 {values[-1]:.1f}%)")
        axis.set_ylabel(f"{label} (%)", color=color)
        axis.tick_params(axis="y", labelcolor=color)
    ax.set_xlabel("Training step")
    ax.set_title(title or "Intervention dynamics (paper Fig. 4)")
    handles = [h for _, _, _, axis in curves for h in axis.get_legend_handles_labels()[0]]
    ax.legend(handles, [h.get_label() for h in handles], loc="best", fontsize=8)
    fig.tight_layout()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    plt.close(fig)
    logger.info("wrote %s", out)
    return out


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ffr.plot", description="Draw paper Fig. 4 from a run's metrics.")
    p.add_argument("output_dir", help="training output_dir holding metrics.jsonl")
    p.add_argument("--metrics", default="metrics.jsonl", help="metrics file name inside output_dir")
    p.add_argument("--out", default=None, help="PNG path (default: OUTPUT_DIR/fig4_intervention.png)")
    p.add_argument("--smooth", type=int, default=1, help="moving-average window in logged steps")
    p.add_argument("--title", default=None)
    a = p.parse_args(argv)
    out = a.out or str(Path(a.output_dir) / "fig4_intervention.png")
    path = plot_intervention(Path(a.output_dir) / a.metrics, out, smooth=a.smooth, title=a.title)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
