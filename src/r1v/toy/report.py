"""Results of the toy experiment: ``results.json``, ``results.md`` and ``results.png`` from the runs'
``summary.json`` files (``r1v.toy.runs``).

The table gives, per method, the held-out accuracy at the start (the warm student, the same for
every method) and at the end as mean ± sample std over seeds, the gain, and every seed; then
the positive control (GRPO's mean gain ≥ 5 points), each method − GRPO with the larger of the two
seed stds (the protocol's bar) and each method's diagnostics (``r1v.toy.runs.DIAGNOSTICS``). The figure has two panels: accuracy against step
(one line per method, its seed band = min..max) and against generated training tokens (FFR's
second round and T-GRPO's shuffled rollouts generate more per step).
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from r1v.toy.protocol import ToyProtocol  # noqa: E402

POSITIVE_CONTROL_POINTS = 5.0
NAMES = {"grpo": "GRPO", "ffr": "FFR", "tgrpo": "T-GRPO", "luffy": "LUFFY", "replay": "Replay (RePO)",
         "majority": "Majority vote", "judge": "Judge reward"}


def _stats(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def _diagnostics(summary: dict) -> dict:
    """A run's method diagnostics (runs written before the Fig. 5 variants kept FFR's under "ffr")."""
    return summary.get("diagnostics") or summary.get("ffr") or {}


def collect(protocol: ToyProtocol, out: Path) -> dict:
    """Every finished run's summary grouped by method, with per-method statistics (accuracy in [0, 1])."""
    methods = {}
    for method in protocol.rl.methods:
        runs = []
        for seed in protocol.rl.seeds:
            path = out / method / f"seed{seed}" / "summary.json"
            if path.is_file():
                runs.append(json.loads(path.read_text(encoding="utf-8")))
        if not runs:
            continue
        entry = {"runs": runs, "start": _stats([r["start_accuracy"] for r in runs]),
                 "final": _stats([r["final_accuracy"] for r in runs]),
                 "gain": _stats([r["final_accuracy"] - r["start_accuracy"] for r in runs]),
                 "generated_tokens": _stats([float(r["generated_tokens"]) for r in runs]),
                 "wall_s": _stats([r["wall_s"] for r in runs])}
        diags = [_diagnostics(r) for r in runs]
        if diags[0]:
            entry["diagnostics"] = {k: _stats([d[k] for d in diags if d.get(k) is not None] or [float("nan")])
                                    for k in diags[0]}
        methods[method] = entry
    return methods


def comparison(methods: dict) -> dict:
    """The positive control and every method − GRPO (``ffr_minus_grpo``, ``luffy_minus_grpo``, ...)."""
    out = {}
    if "grpo" in methods:
        gain = methods["grpo"]["gain"]["mean"] * 100
        out["positive_control"] = {"grpo_mean_gain_points": gain, "bar_points": POSITIVE_CONTROL_POINTS,
                                   "holds": gain >= POSITIVE_CONTROL_POINTS}
    for method in methods:
        if method == "grpo" or "grpo" not in methods:
            continue
        diff = (methods[method]["final"]["mean"] - methods["grpo"]["final"]["mean"]) * 100
        spread = max(methods[method]["final"]["std"], methods["grpo"]["final"]["std"]) * 100
        # Beyond the spread either way: a method can be worse than GRPO by more than the seed noise.
        out[f"{method}_minus_grpo"] = {"points": diff, "larger_seed_std_points": spread,
                                       "beyond_spread": abs(diff) > spread}
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def markdown(protocol: ToyProtocol, warm_summary: dict, methods: dict, comp: dict, wall_s: float) -> str:
    seeds = list(protocol.rl.seeds)
    lines = [f"Toy experiment, protocol v{protocol.version}: held-out greedy accuracy (%) on "
             f"{warm_summary['warm_student']['n']} test items, {protocol.rl.max_steps} RL steps, seeds {seeds}.",
             "", "| method | start | final (mean ± std) | gain | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|---|---|---|---|" + "---|" * len(seeds)]
    for method, e in methods.items():
        per_seed = {r["seed"]: r["final_accuracy"] for r in e["runs"]}
        cells = [_pct(per_seed[s]) if s in per_seed else "—" for s in seeds]
        lines.append(f"| {method} | {_pct(e['start']['mean'])} | {_pct(e['final']['mean'])} ± {_pct(e['final']['std'])}"
                     f" | {100 * e['gain']['mean']:+.1f} | " + " | ".join(cells) + " |")
    lines.append("")
    if "positive_control" in comp:
        pc = comp["positive_control"]
        lines.append(f"Positive control (GRPO mean gain ≥ {pc['bar_points']:.0f} points): "
                     f"{pc['grpo_mean_gain_points']:+.1f} points — {'holds' if pc['holds'] else 'does not hold'}.")
    for method in methods:
        if f"{method}_minus_grpo" in comp:
            d = comp[f"{method}_minus_grpo"]
            lines.append(f"{NAMES.get(method, method)} − GRPO: {d['points']:+.1f} points (larger seed std "
                         f"{d['larger_seed_std_points']:.1f}; {'beyond' if d['beyond_spread'] else 'within'} the spread).")
    for method, e in methods.items():
        if e.get("diagnostics"):
            diag = ", ".join(f"{k.removeprefix(method + '/')} {v['mean']:.3f}" for k, v in e["diagnostics"].items())
            lines.append(f"{NAMES.get(method, method)} diagnostics (mean over steps and seeds): {diag}.")
    tokens = ", ".join(f"{m} {e['generated_tokens']['mean']:.0f}" for m, e in methods.items())
    times = ", ".join(f"{m} {e['wall_s']['mean']:.0f} s" for m, e in methods.items())
    lines += [f"Generated training tokens per run: {tokens}. Wall time per run: {times}.",
              f"Warm start: {_pct(warm_summary['warm_student']['accuracy'])}%"
              + (f" (random student {_pct(warm_summary['random_student']['accuracy'])}%)"
                 if warm_summary.get("random_student") else f" (saved student {warm_summary.get('student_from')})")
              + f". Replication wall time {wall_s / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def plot(methods: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for method, e in methods.items():
        curves = [r["curve"] for r in e["runs"]]
        n = min(len(c) for c in curves)
        steps = [c["step"] for c in curves[0][:n]]
        acc = [[100 * c[i]["accuracy"] for c in curves] for i in range(n)]
        mean = [statistics.fmean(a) for a in acc]
        tokens = [statistics.fmean(c[i]["train_generated_tokens"] for c in curves) for i in range(n)]
        for ax, x in ((axes[0], steps), (axes[1], tokens)):
            (line,) = ax.plot(x, mean, marker="o", ms=3, label=method)
            ax.fill_between(x, [min(a) for a in acc], [max(a) for a in acc], color=line.get_color(), alpha=0.2)
    axes[0].set_xlabel("RL step")
    axes[1].set_xlabel("generated training tokens (FFR and T-GRPO generate more per step)")
    for ax in axes:
        ax.set_ylabel("held-out accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Does it learn? Toy world, mean over seeds (band: min..max)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(protocol: ToyProtocol, warm: Path, out: Path, wall_s: float) -> list[Path]:
    """Write results.json / results.md / results.png into ``out``; returns their paths."""
    warm_summary = json.loads((warm / "warm_start.json").read_text(encoding="utf-8"))
    methods = collect(protocol, out)
    comp = comparison(methods)
    results = {"protocol": protocol.to_dict(), "warm_start": warm_summary, "methods": methods, "comparison": comp,
               "replication_wall_s": wall_s}
    paths = [out / "results.json", out / "results.md", out / "results.png"]
    paths[0].write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(markdown(protocol, warm_summary, methods, comp, wall_s), encoding="utf-8")
    if methods:
        plot(methods, paths[2])
    return paths
