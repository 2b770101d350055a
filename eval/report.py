"""Merge ``eval.run`` outputs into the paper's tables (Markdown and CSV).

    python -m eval.report RUN_DIR [RUN_DIR ...] --out REPORT_DIR [--labels a,b] \
        [--gain FFR=Video-R1-SFT] [--mean-std]

Each RUN_DIR is an ``eval.run --out`` folder (``run_config.json`` + ``<bench>/summary.json``).
Written to REPORT_DIR:
- ``table2.md`` / ``table2.csv``: rows = runs, columns = the eight benchmarks in Table 2's order
  and ``Avg.`` (the plain mean of the eight, as in Tables 2, 16 and 17; "—" unless all eight
  were run). A benchmark that was run but has no scored item (``n`` = 0, e.g. MMVU under
  ``--protocol official`` without a judge: every item unjudged) has no score: it shows "—"
  (an empty CSV cell), is left out of Avg. (marked ‡, the mean of the others) and is named
  under the table; its summary's ``overall`` of 0.0 is never shown or averaged. ``--gain T=B`` adds the relative gain row of Table 2 under T,
  ``(T / B - 1) * 100``; ``--mean-std`` adds Table 17's "Mean ± Std" row (population std per
  benchmark; the Avg. column's std is the mean of the per-benchmark stds, which is how Table 17's
  0.4 arises from its rows).
- ``categories.md`` / ``categories.csv``: every benchmark's per-category accuracies, one table per
  (benchmark, group) with rows = runs; the CSV is long format (model, benchmark, group, value,
  accuracy); an unscored benchmark's cells are "—" / empty there too.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import statistics
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# Table 2's columns: four video reasoning benchmarks, then four general video benchmarks.
TABLE2 = [("mmvu", "MMVU"), ("vsibench", "VSI-Bench"), ("videommmu", "VideoMMMU"),
          ("videoholmes", "Video-Holmes"), ("longvideobench", "LongVideoBench"), ("lvbench", "LVBench"),
          ("mvbench", "MVBench"), ("tempcompass", "TempCompass")]
NAMES = [n for n, _ in TABLE2]
DASH = "—"
# Marks an Avg. taken over fewer than eight benchmarks because some had no scored item.
PARTIAL_AVG = "‡"


@dataclass
class RunResult:
    """One evaluated checkpoint: its label, settings and {benchmark: summary}."""

    label: str
    path: Path
    args: dict
    summaries: dict[str, dict]

    def scored(self, name: str) -> bool:
        """True when benchmark `name` was run and scored at least one item.

        A summary with ``n`` = 0 carries ``overall`` 0.0 (the mean of nothing), which is not a
        score of zero: every item was unjudged or missing.
        """
        s = self.summaries.get(name)
        return s is not None and s.get("overall") is not None and int(s.get("n", 1)) > 0

    def score(self, name: str) -> float | None:
        """The benchmark's overall accuracy, or None when it was not run or scored no item."""
        return float(self.summaries[name]["overall"]) if self.scored(name) else None

    def unscored(self) -> list[str]:
        """Benchmarks that were run but scored no item, in Table 2's order."""
        return [n for n in NAMES if n in self.summaries and not self.scored(n)]

    def average(self) -> float | None:
        """Mean over the scored benchmarks; None when any of the eight was not run or none scored.

        Unscored benchmarks (`unscored`) are left out rather than counted as 0.
        """
        if any(n not in self.summaries for n in NAMES):
            return None
        scores = [self.score(n) for n in NAMES if self.scored(n)]
        return sum(scores) / len(scores) if scores else None


def load_run(path: str | Path, label: str | None = None) -> RunResult:
    """Read a run folder. The label defaults to the run's ``--label``."""
    path = Path(path)
    config_path = path / "run_config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{path}: no run_config.json (not an eval.run output folder)")
    args = json.loads(config_path.read_text())["args"]
    summaries = {}
    for summary_path in sorted(path.glob("*/summary.json")):
        summary = json.loads(summary_path.read_text())
        summaries[summary.get("benchmark", summary_path.parent.name)] = summary
    unknown = sorted(set(summaries) - set(NAMES))
    if unknown:
        logger.warning("%s: benchmarks outside Table 2 not tabulated: %s", path, unknown)
    if not summaries:
        logger.warning("%s: no summary.json found", path)
    return RunResult(label=label or args.get("label") or path.name, path=path, args=args,
                     summaries=summaries)


# ------------------------------------------------------------------ Table 2
def fmt(value: float | None, digits: int) -> str:
    return DASH if value is None else f"{value:.{digits}f}"


def main_row(run: RunResult, digits: int) -> list[str]:
    """Label, eight scores and Avg.; a score computed without some items is marked with †, an
    Avg. that leaves out unscored benchmarks with ‡."""
    cells = [run.label]
    for name in NAMES:
        s = run.summaries.get(name)
        mark = "†" if run.scored(name) and s.get("n_missing", 0) else ""
        cells.append(fmt(run.score(name), digits) + mark)
    average = run.average()
    return cells + [fmt(average, digits) + (PARTIAL_AVG if average is not None and run.unscored() else "")]


def gain_row(target: RunResult, base: RunResult) -> list[str]:
    """Table 2's gain row: relative improvement of ``target`` over ``base`` in percent.

    The Avg. gain is "—" when the two averages leave out different benchmarks (not comparable).
    """
    cells = [f"gain vs {base.label}"]
    same_set = target.unscored() == base.unscored()
    pairs = [(target.score(n), base.score(n)) for n in NAMES]
    pairs.append((target.average(), base.average()) if same_set else (None, None))
    for t, b in pairs:
        cells.append(DASH if t is None or not b else f"{(t / b - 1) * 100:+.2f}")
    return cells


def mean_std_row(runs: list[RunResult], digits: int) -> list[str]:
    """Table 17's Mean ± Std over runs (population std; Avg. std = mean of benchmark stds)."""
    cells, stds = ["Mean ± Std"], []
    for name in NAMES:
        values = [r.score(name) for r in runs]
        if None in values:
            cells.append(DASH)
            continue
        stds.append(statistics.pstdev(values))
        cells.append(f"{statistics.fmean(values):.{digits}f} ± {stds[-1]:.{digits}f}")
    avgs = [r.average() for r in runs]
    if None in avgs or len(stds) != len(NAMES):
        return cells + [DASH]
    return cells + [f"{statistics.fmean(avgs):.{digits}f} ± {statistics.fmean(stds):.{digits}f}"]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def settings_note(runs: list[RunResult]) -> str:
    """One line per run with the settings behind its numbers (protocol, frames, pixels, seed)."""
    keys = ("protocol", "frames", "max_pixels", "seed", "temperature", "top_p", "max_new_tokens")
    lines = []
    for r in runs:
        settings = ", ".join(f"{k}={r.args.get(k)}" for k in keys)
        counts = ", ".join(f"{n}={s['n']}" + (f" (unjudged {s['n_unjudged']})" if s.get("n_unjudged") else "")
                           + (f" (missing {s['n_missing']})" if s.get("n_missing") else "")
                           for n, s in sorted(r.summaries.items()))
        lines.append(f"- {r.label}: {settings}; items: {counts}")
    return "\n".join(lines)


def unscored_note(runs: list[RunResult]) -> str:
    """One line per run with unscored benchmarks: why they show "—" and what Avg. covers."""
    titles = dict(TABLE2)
    lines = []
    for r in runs:
        names = r.unscored()
        if not names:
            continue
        why = ", ".join(f"{titles[n]} (n=0" + (f", unjudged {r.summaries[n]['n_unjudged']}"
                                                if r.summaries[n].get("n_unjudged") else "") + ")"
                        for n in names)
        avg = (f"Avg.{PARTIAL_AVG} is the mean of the other {len(NAMES) - len(names)}"
               if r.average() is not None else "no Avg.")
        lines.append(f"- {r.label}: no scored items in {why}: shown as {DASH}, left out of Avg.; {avg}.")
    return ("Benchmarks without a score (not 0):\n" + "\n".join(lines) + "\n\n") if lines else ""


def table2(runs: list[RunResult], gains: dict[str, str], mean_std: bool, digits: int) -> tuple[list, list]:
    """(header, rows) of Table 2, gain rows placed under their target run."""
    by_label = {r.label: r for r in runs}
    for target, base in gains.items():
        for label in (target, base):
            if label not in by_label:
                raise ValueError(f"--gain names unknown run {label!r}; runs: {sorted(by_label)}")
    header = ["Model"] + [title for _, title in TABLE2] + ["Avg."]
    rows = []
    for run in runs:
        rows.append(main_row(run, digits))
        if run.label in gains:
            rows.append(gain_row(run, by_label[gains[run.label]]))
    if mean_std:
        rows.append(mean_std_row(runs, digits))
    return header, rows


def table2_csv(runs: list[RunResult], path: Path) -> None:
    """Unrounded scores (4 decimals); empty cells where a benchmark was not run or scored no item."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["model"] + NAMES + ["avg"])
        for r in runs:
            values = [r.score(n) for n in NAMES] + [r.average()]
            w.writerow([r.label] + ["" if v is None else f"{v:.4f}" for v in values])


# ------------------------------------------------------------------ categories
def category_values(runs: list[RunResult], name: str) -> dict[str, list[str]]:
    """{group: values} of benchmark `name` over the runs that scored it, in first-seen order."""
    groups: dict[str, list[str]] = {}
    for r in runs:
        if not r.scored(name):  # an unscored benchmark's categories are means of nothing
            continue
        for group, values in r.summaries[name].get("categories", {}).items():
            known = groups.setdefault(group, [])
            known += [v for v in values if v not in known]
    return groups


def category_score(run: RunResult, name: str, group: str, value: str) -> float | None:
    """One category accuracy, or None when the run lacks it or scored no item of `name`."""
    if not run.scored(name):
        return None
    acc = run.summaries[name].get("categories", {}).get(group, {}).get(value)
    return None if acc is None else float(acc)


def category_tables(runs: list[RunResult], digits: int) -> str:
    """Markdown: one section per benchmark, one table per category group (rows = runs)."""
    parts = []
    for name, title in TABLE2:
        groups = category_values(runs, name)
        if not groups:
            continue
        parts.append(f"## {title}\n")
        for group, values in groups.items():
            rows = [[r.label] + [fmt(category_score(r, name, group, v), digits) for v in values] for r in runs]
            parts.append(f"### {group}\n\n" + markdown_table(["Model"] + values, rows))
    return "\n".join(parts)


def categories_csv(runs: list[RunResult], path: Path) -> None:
    """Long format; a run that ran a benchmark but scored none of it gets empty accuracy cells
    for the categories other runs have (it was run: leaving the rows out would hide that)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "benchmark", "group", "value", "accuracy"])
        for r in runs:
            for name in NAMES:
                if name in r.unscored():
                    for group, values in category_values(runs, name).items():
                        w.writerows([r.label, name, group, value, ""] for value in values)
                    continue
                for group, values in r.summaries.get(name, {}).get("categories", {}).items():
                    for value, acc in values.items():
                        w.writerow([r.label, name, group, value, f"{float(acc):.4f}"])


# ------------------------------------------------------------------ entry points
def write_report(runs: list[RunResult], out: str | Path, gains: dict[str, str] | None = None,
                 mean_std: bool = False, digits: int = 1) -> dict[str, Path]:
    """Write the four report files; returns {kind: path}."""
    labels = [r.label for r in runs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate run labels {labels}; pass --labels")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    header, rows = table2(runs, gains or {}, mean_std, digits)
    paths = {k: out / f for k, f in (("table2_md", "table2.md"), ("table2_csv", "table2.csv"),
                                     ("categories_md", "categories.md"),
                                     ("categories_csv", "categories.csv"))}
    note = ("Video reasoning: MMVU, VSI-Bench, VideoMMMU, Video-Holmes; video general: LongVideoBench, "
            "LVBench, MVBench, TempCompass. † = some items missing (excluded from that score). "
            f"{PARTIAL_AVG} = Avg. over the scored benchmarks only.\n\n")
    paths["table2_md"].write_text("# Table 2 layout\n\n" + note + markdown_table(header, rows) + "\n"
                                  + unscored_note(runs) + "Settings:\n" + settings_note(runs) + "\n",
                                  encoding="utf-8")
    table2_csv(runs, paths["table2_csv"])
    paths["categories_md"].write_text("# Per-category accuracy\n\n" + category_tables(runs, digits),
                                      encoding="utf-8")
    categories_csv(runs, paths["categories_csv"])
    return paths


def parse_gains(items: list[str]) -> dict[str, str]:
    gains = {}
    for item in items:
        target, sep, base = item.partition("=")
        if not sep or not target or not base:
            raise SystemExit(f"--gain expects TARGET=BASE, got {item!r}")
        gains[target] = base
    return gains


def main(argv: list[str] | None = None) -> dict[str, Path]:
    p = argparse.ArgumentParser(prog="python -m eval.report", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="eval.run output folders, one table row each.")
    p.add_argument("--out", required=True, help="Folder for the report files.")
    p.add_argument("--labels", default=None, help="Comma-separated row names (default: run labels).")
    p.add_argument("--gain", action="append", default=[], help="TARGET=BASE: add a relative-gain row.")
    p.add_argument("--mean-std", action="store_true", help="Add a Mean ± Std row (Table 17).")
    p.add_argument("--digits", type=int, default=1)
    args = p.parse_args(argv)
    labels = args.labels.split(",") if args.labels else [None] * len(args.runs)
    if len(labels) != len(args.runs):
        raise SystemExit(f"--labels has {len(labels)} names for {len(args.runs)} runs")
    runs = [load_run(path, label) for path, label in zip(args.runs, labels)]
    paths = write_report(runs, args.out, parse_gains(args.gain), args.mean_std, args.digits)
    print(paths["table2_md"].read_text(encoding="utf-8"))
    return paths


if __name__ == "__main__":
    main()
