"""Assemble the inspector page: summary at the top, then the filterable, paged cards.

`build_report(inputs, out)` writes ``out`` (the HTML) and ``<out stem>_files/`` next to it
(thumbnails and the Fig. 4 PNG) and returns a `Report` with the counts and sizes.

Summary: the run's Table 5 (leak rates) and Table 10 (fix rate by error type) rows
computed by `ffr.audit` over the lines it accepts, the Fig. 4 plot (`ffr.plot`, when
the run has a metrics.jsonl holding the intervention ratio), and counts of requests by
outcome class, trainer outcome, status and error type.

Size: every card's HTML is embedded once as JSON (about 2-4 kB per request) and the
script puts only the current page of cards into the DOM (50 by default), so the page
stays responsive with thousands of requests; thumbnails live in the files folder and
load lazily, only for the cards on screen.
"""
from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Optional

from ffr.audit import fix_table, leak_table
from ffr.inspect import OUTCOME_CLASSES, LogLine, RunInputs, config_value, log_times, read_lines
from ffr.inspect.assets import CSS, JS
from ffr.inspect.cards import OUTCOME_LABELS, card_html
from ffr.inspect.frames import FrameStore, vision_config

logger = logging.getLogger(__name__)

ERROR_TYPES = ("spatial", "temporal", "misconception")
PAGE_SIZES = (25, 50, 100, 200)


@dataclass
class Report:
    """What `build_report` wrote: paths, request count, HTML bytes, thumbnails written, seconds taken."""

    html: Path
    files: Path
    requests: int
    html_bytes: int
    thumbnails: int
    seconds: float


def build_report(inputs: RunInputs, out: Path, frames: bool = True, max_side: int = 192,
                 title: Optional[str] = None) -> Report:
    """Write the page for `inputs` to `out` (see the module docstring); frames False skips decoding videos."""
    t0 = time.monotonic()
    out = Path(out)
    files = out.with_name(out.stem + "_files")
    files.mkdir(parents=True, exist_ok=True)
    lines = read_lines(inputs.logs)
    store = FrameStore(files, files.name, vision_config(inputs.run_config), max_side=max_side)
    if frames:
        store.prefetch((ln.row.get("video_path"), log_times(ln.row)) for ln in lines if ln.row)
    visual_context = bool(config_value(inputs.run_config, "ffr_visual_context", True))
    data = []
    for ln in lines:
        row = ln.row or {}
        thumbs = store.thumbs(row.get("video_path"), log_times(row))
        step = row.get("step")
        data.append({"o": ln.outcome_class, "l": int(bool(ln.audit_leak)), "t": ln.error_types,
                     "s": step if isinstance(step, int) else None, "h": card_html(ln, thumbs, visual_context)})
    page = _page(title or f"Patch inspector: {', '.join(str(p) for p in inputs.logs[:3])}"
                 + (" \u2026" if len(inputs.logs) > 3 else ""), _summary(lines, inputs, files), data)
    out.write_text(page, encoding="utf-8")
    return Report(out, files, len(lines), out.stat().st_size, store.written, time.monotonic() - t0)


def _summary(lines: list[LogLine], inputs: RunInputs, files: Path) -> str:
    entries = [ln.entry for ln in lines if ln.entry is not None]
    t5 = _table(leak_table(entries), ["Teacher / prompt", "Patches", "Direct", "Partial", "Total"])
    t10 = _table(fix_table(entries), ["Error Type", "Samples", "Fix Rate"])
    bad = sum(ln.entry is None for ln in lines)
    note = f"<p>{bad} line(s) the audit could not use are left out of both tables (shown as cards).</p>" if bad else ""
    panels = [f'<div class="panel"><h2>Answer leakage (Table 5)</h2>{t5}<h2>Fix rate by error type '
              f'(Table 10)</h2>{t10}{note}</div>', _fig4(inputs, files), _counts(lines)]
    return f'<section class="summary">{"".join(panels)}</section>'


def _fig4(inputs: RunInputs, files: Path) -> str:
    from ffr.plot import plot_intervention  # matplotlib only when a page is built

    if inputs.metrics is None:
        return '<div class="panel"><h2>Fig. 4</h2><p>No metrics.jsonl among the inputs.</p></div>'
    try:
        png = plot_intervention(inputs.metrics, files / "fig4_intervention.png")
    except (OSError, ValueError) as exc:  # a run without FFR metrics still gets its cards
        return f'<div class="panel"><h2>Fig. 4</h2><p>Not drawn: {escape(str(exc))}</p></div>'
    return (f'<div class="panel"><h2>Intervention dynamics (Fig. 4)</h2>'
            f'<img src="{escape(files.name)}/{png.name}" alt="Fig. 4"></div>')


def _counts(lines: list[LogLine]) -> str:
    classes = Counter(ln.outcome_class for ln in lines)
    raw = Counter(str((ln.row or {}).get("outcome")) for ln in lines)
    status = Counter(str((ln.row or {}).get("status")) for ln in lines)
    types = Counter(t for ln in lines for t in ln.error_types)
    leaks = sum(bool(ln.audit_leak) for ln in lines)
    rows = [("requests", len(lines))]
    rows += [(f"outcome: {OUTCOME_LABELS[c]}", classes[c]) for c in OUTCOME_CLASSES if classes[c]]
    rows += [("flagged as leaking (audit)", leaks)]
    rows += [(f"error type: {t}", types[t]) for t in ERROR_TYPES]
    rows += [(f"trainer outcome: {k}", v) for k, v in sorted(raw.items())]
    rows += [(f"status: {k}", v) for k, v in sorted(status.items())]
    body = "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<div class="panel"><h2>Requests</h2><table id="counts">{body}</table></div>'


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(r[c]))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _controls() -> str:
    outcomes = "".join(f'<option value="{c}">{escape(OUTCOME_LABELS[c])}</option>' for c in OUTCOME_CLASSES)
    types = "".join(f'<option value="{t}">{t}</option>' for t in ERROR_TYPES)
    sizes = "".join(f'<option value="{n}">{n}</option>' for n in PAGE_SIZES)
    return ('<nav class="controls">'
            f'<label>Outcome <select id="f-outcome"><option value="">all</option>{outcomes}</select></label>'
            f'<label>Error type <select id="f-type"><option value="">all</option>{types}'
            '<option value="none">none</option></select></label>'
            '<label>Step <input id="f-from" type="number" min="0" placeholder="from"> \u2013 '
            '<input id="f-to" type="number" min="0" placeholder="to"></label>'
            '<label>Search <input id="f-q" type="search" placeholder="question, answer, guidance, id\u2026"></label>'
            f'<label>Per page <select id="f-size">{sizes}</select></label>'
            '<span id="shown"></span></nav>')


def _pager(suffix: str) -> str:
    return (f'<div class="pager"><button id="prev{suffix}">\u2190 previous</button>'
            f'<span id="pageinfo{suffix}"></span><button id="next{suffix}">next \u2192</button></div>')


def _page(title: str, summary: str, data: list[dict]) -> str:
    # "<" is escaped inside the JSON so no card text can close the script element early.
    blob = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>{escape(title)}</h1>{summary}{_controls()}{_pager('')}<div id=\"cards\"></div>{_pager('2')}"
            "</main>"
            f"<script id=\"cards-data\" type=\"application/json\">{blob}</script><script>{JS}</script>"
            "</body></html>\n")
