"""One HTML card per teacher request.

A card shows: the request (step, ids, question, options, gold answer), the frames the
student saw (thumbnails; the key-frame range outlined, each region drawn as a box in
percent of the frame, see `ffr.inspect.geometry`), the patch fields and the evidence
block exactly as the student read it (`ffr.patch.render_evidence_block`, with the run's
visual-context setting and frame size), the first and second answers with their
rewards and which rollout was kept, and for a request without a usable patch its
status, leak source and error detail.

Markup contract (read by the page script and the browser test): the card root is
``<article class="card" data-outcome=... data-step=... data-types=...>``; a thumbnail is
``<figure class="frame" data-frame=i>`` with class ``key`` inside the key-frame range;
a box is ``<div class="box" data-region=k data-frame=i data-left=.. data-top=..
data-width=.. data-height=..>`` whose inline style places it by the same percentages.
"""
from __future__ import annotations

from html import escape
from typing import Optional

from ffr.inspect import LogLine, log_times
from ffr.inspect.frames import Thumbs
from ffr.inspect.geometry import FrameMark, frame_marks, key_range_label, out_of_range
from ffr.patch import EvidencePatch, render_evidence_block

OUTCOME_LABELS = {"fixed": "fixed", "not_fixed": "not fixed", "no_patch": "no patch", "leak": "leak",
                  "mined": "mined (no second round)"}


DASH, DOT = "\u2014", " \u00b7 "


def _e(value) -> str:
    return escape("" if value is None else str(value))


def _reward(value) -> str:
    return DASH if value is None else f"{float(value):.3g}"


def card_html(line: LogLine, thumbs: Thumbs, visual_context: bool = True) -> str:
    """The card of one log line (see the module docstring for the markup contract)."""
    row = line.row or {}
    patch = line.entry.patch if line.entry is not None else None
    timestamps = log_times(row)
    cls = line.outcome_class
    step = row.get("step")
    parts = [
        f'<article class="card {cls}" data-outcome="{cls}" data-step="{_e("" if step is None else step)}" '
        f'data-types="{_e(" ".join(line.error_types))}" data-leak="{int(bool(line.audit_leak))}">',
        _header(line, row, cls),
    ]
    if line.problem:
        parts.append(f'<p class="problem">Line not usable by the audit: {_e(line.problem)}</p>')
    parts.append(_question(row))
    parts.append(_frames(patch, timestamps, thumbs))
    parts.append('<div class="cols">')
    parts.append(_patch_section(row, patch, timestamps, thumbs.size, visual_context))
    parts.append(_answers(row, line))
    parts.append("</div></article>")
    return "".join(parts)


def _header(line: LogLine, row: dict, cls: str) -> str:
    step = row.get("step")
    teacher = " / ".join(str(v) for v in (row.get("teacher_model"), row.get("prompt_version")) if v)
    types = "".join(f'<span class="tag">{_e(t)}</span>' for t in line.error_types)
    leak = '<span class="badge leak">leak</span>' if line.audit_leak and cls != "leak" else ""
    return (f'<header><span class="badge {cls}">{_e(OUTCOME_LABELS[cls])}</span>{leak}'
            f'<span class="step">step {_e(DASH if step is None else step)}</span>{types}'
            f'<span class="sid">{_e(row.get("sample_id"))}</span>'
            f'<span class="where">{_e(line.where)}{DOT + _e(teacher) if teacher else ""}</span></header>')


def _question(row: dict) -> str:
    options = row.get("options") or []
    question = str(row.get("question") or "")
    # The trainer's question text already lists the options; list them again only when it does not.
    shown = all(str(o) in question for o in options)
    opts = "" if shown else "".join(f"<li>{_e(o)}</li>" for o in options)
    return (f'<div class="question"><pre>{_e(row.get("question"))}</pre>'
            + (f'<ol class="options">{opts}</ol>' if opts else "")
            + f'<p class="meta">{_e(row.get("problem_type"))} \u00b7 gold answer: <b>{_e(row.get("gold_answer"))}</b>'
            f' \u00b7 video: <code>{_e(row.get("video_path"))}</code></p></div>')


def _frames(patch: Optional[EvidencePatch], timestamps: list[float], thumbs: Thumbs) -> str:
    n = len(timestamps) or len(thumbs.urls)
    marks = frame_marks(patch, n, thumbs.size)
    note = f'<p class="noframes">No thumbnails: {_e(thumbs.error)}</p>' if thumbs.error else ""
    figures = "".join(_figure(m, timestamps, thumbs) for m in marks)
    return f'<div class="frames">{note}<div class="strip">{figures}</div></div>'


def _figure(mark: FrameMark, timestamps: list[float], thumbs: Thumbs) -> str:
    i = mark.index
    # Placeholder frames keep the video's aspect ratio (or 4:3) so boxes still show where they point.
    w, h = thumbs.size or (4, 3)
    if i < len(thumbs.urls):
        picture = f'<img loading="lazy" src="{_e(thumbs.urls[i])}" alt="frame {i}">'
    else:
        picture = f'<div class="blank" style="aspect-ratio:{w}/{h}"></div>'
    boxes = "".join(
        f'<div class="box{" clip" if b.whole_clip else ""}" data-region="{b.region}" data-frame="{i}" '
        f'data-left="{b.left}" data-top="{b.top}" data-width="{b.width}" data-height="{b.height}" '
        f'style="left:{b.left}%;top:{b.top}%;width:{b.width}%;height:{b.height}%">'
        f'<span>R{b.region}</span></div>' for b in mark.boxes)
    when = f"{timestamps[i]:.2f} s" if i < len(timestamps) else "image"
    key = " key" if mark.in_key_range else ""
    return (f'<figure class="frame{key}" data-frame="{i}"><div class="pic">{picture}{boxes}</div>'
            f'<figcaption>#{i} \u00b7 {when}</figcaption></figure>')


def _patch_section(row: dict, patch: Optional[EvidencePatch], timestamps: list[float],
                   size: Optional[tuple[int, int]], visual_context: bool) -> str:
    if patch is None:
        raw = row.get("patch")
        extra = f"<pre>{_e(raw)}</pre>" if raw is not None else ""
        return f'<section class="patch"><h4>Patch</h4><p>none</p>{extra}</section>'
    fields = [("error types", ", ".join(patch.error_types)),
              ("key frames", key_range_label(patch.key_frames, timestamps)),
              ("temporal markers", "; ".join(patch.temporal_markers) or "none")]
    for k, r in enumerate(patch.spatial_regions):
        frame = "key frames" if r.frame is None else f"frame {r.frame}"
        fields.append((f"region R{k}", f"{frame}: [{', '.join(f'{v:g}' for v in r.box)}] ({r.coords})"))
    fields.append(("guidance", patch.guidance))
    bad = out_of_range(patch, len(timestamps))
    if bad:
        fields.append(("out of range", ", ".join(bad)))
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in fields)
    try:
        block = render_evidence_block(patch, timestamps, visual_context=visual_context, frame_size=size)
        evidence = f'<pre class="evidence">{_e(block)}</pre>'
    except ValueError as exc:  # what the trainer logged as invalid_patch: the student never read a block
        evidence = f'<p class="problem">Evidence block not rendered: {_e(exc)}</p>'
    return (f'<section class="patch"><h4>Patch</h4><table>{rows}</table>'
            f'<h4>Evidence block (as the student read it)</h4>{evidence}</section>')


def _answers(row: dict, line: LogLine) -> str:
    second = row.get("patched_reward") is not None or row.get("patched_answer") is not None
    items = [("first answer", f'{_e(row.get("student_answer"))} (reward {_reward(row.get("first_reward"))})')]
    if second:
        items.append(("second answer", f'{_e(row.get("patched_answer"))} '
                                        f'(reward {_reward(row.get("patched_reward"))})'))
        kept = "patched (second) rollout" if row.get("chosen_patched") else "first rollout"
        items.append(("kept", kept))
    items.append(("outcome", _e(row.get("outcome"))))
    items.append(("status", _e(row.get("status"))))
    for key in ("error_type", "leak_source", "detail"):
        if row.get(key):
            items.append((key.replace("_", " "), _e(row.get(key))))
    if line.audit_leak and line.outcome_class != "leak":
        items.append(("audit leak", _e(line.audit_leak)))
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in items)
    response = row.get("student_response")
    details = (f'<details><summary>student response</summary><pre>{_e(response)}</pre></details>'
               if response else "")
    return f'<section class="answers"><h4>Answers</h4><table>{rows}</table>{details}</section>'
