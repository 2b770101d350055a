"""Reading a teacher model's replies: markup, text actions, lenient JSON, patch validation.

Servers differ in what a reply looks like, so everything here is tolerant of form and strict
about content:
- GLM-4.5V wraps answers in ``<|begin_of_box|> ... <|end_of_box|>`` and may think inline in
  ``<think> ... </think>``; vLLM's reasoning parsers move the thinking to
  ``reasoning_content`` (newer servers: ``reasoning``). `strip_markup` removes all of it.
- Tool calls come as native ``tool_calls`` (arguments a JSON string, or an object on the GLM
  API), or as text: our ``ACTION: {...}`` line, a Hermes ``<tool_call>{json}</tool_call>``
  block, or GLM's ``<tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>``.
- The final patch is the first JSON object in the text that validates as an `EvidencePatch`
  after normalisation (error types with an ``_error`` suffix, key frames as a list,
  ``bbox``/``bbox_2d`` keys, 0-1000 boxes converted to relative coordinates).
A reply that yields no valid patch raises `ReplyError` whose `kind` becomes the item's
``error_type`` after the one re-ask.

Cost contract: every function here runs in time linear in the reply's length (no regex that
rescans the rest of the text from each tag, as ``<think>.*?</think>`` does on a reply of
40,000 unclosed ``<think>`` tags), and `parse_patch` tries at most `MAX_JSON_STARTS` ``{``
positions and keeps at most `MAX_CANDIDATES` objects, so a reply of millions of ``{}`` costs
neither minutes nor gigabytes. Callers still run them off the event loop (see
``openai_backend``), since a linear pass over a megabyte is milliseconds, not microseconds.
"""
from __future__ import annotations

import json
import re
from typing import Any, Optional

from pydantic import ValidationError

from ffr.patch import EvidencePatch, check_patch_frames

_THINK_TAG = re.compile(r"<(/?)think>", re.IGNORECASE)
_CLOSE_THINK = re.compile(r"</think>", re.IGNORECASE)
_VALUE_OPEN = re.compile(r"\s*<arg_value>")
_BOX_TAGS = re.compile(r"<\|(?:begin|end)_of_box\|>")
_FENCE = re.compile(r"```(?:json)?", re.IGNORECASE)
_ACTION = re.compile(r"ACTION\s*:\s*", re.IGNORECASE)
_TOOL_NAME = re.compile(r"[A-Za-z_]\w*")
MAX_JSON_STARTS = 4096  # '{' positions tried per text: a patch is among the first few objects
MAX_CANDIDATES = 64  # non-empty objects kept per text


class ReplyError(ValueError):
    """No usable patch in a reply; `kind` names why (empty_reply, reasoning_only, no_json, invalid_patch)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _drop_thinking(text: str) -> str:
    """`text` without ``<think> ... </think>`` spans, in one pass over the tags.

    Same result as removing each leftmost ``<think>.*?</think>`` and then everything up to a
    remaining ``</think>`` (a template that ate the opening tag), without the regex's
    quadratic rescans: an unclosed ``<think>`` keeps the rest of the text.
    """
    kept, pos, open_at = [], 0, None
    for m in _THINK_TAG.finditer(text):
        if not m.group(1):
            if open_at is None:
                open_at = m.start()
        elif open_at is not None:
            kept += [text[pos:open_at], " "]
            pos, open_at = m.end(), None
    kept.append(text[pos:])
    out = "".join(kept)
    stray = _CLOSE_THINK.search(out)  # left only where no <think> opened it: the template ate that tag
    return " " + out[stray.end():] if stray is not None else out


def strip_markup(text: Optional[str]) -> str:
    """Text without thinking, GLM box tags or code fences; '' for None. Linear in len(text)."""
    if not text:
        return ""
    text = _drop_thinking(text)
    text = _BOX_TAGS.sub(" ", text)
    return _FENCE.sub(" ", text).strip()


def message_parts(message: Any) -> tuple[str, str]:
    """(content, reasoning) of an SDK message; reasoning from reasoning_content or reasoning."""
    content = getattr(message, "content", None) or ""
    extra = getattr(message, "model_extra", None) or {}
    reasoning = extra.get("reasoning_content") or extra.get("reasoning") or ""
    return str(content), str(reasoning)


def _json_objects(text: str) -> list[Any]:
    """Non-empty JSON values starting at a '{' of `text` that decode, in order (bounded, see above).

    A '{' inside an object already decoded is not tried again, so nested objects are not
    candidates of their own and "{}{}{}..." is one pass; empty objects are skipped (never a patch).
    """
    decoder, found, starts, pos = json.JSONDecoder(), [], 0, text.find("{")
    while pos >= 0 and starts < MAX_JSON_STARTS and len(found) < MAX_CANDIDATES:
        starts += 1
        try:
            value, end = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError):  # not JSON here, or nested past the decoder's stack
            pos = text.find("{", pos + 1)
            continue
        if value != {}:
            found.append(value)
        pos = text.find("{", end)
    return found


def _tool_call_blocks(text: str) -> list[str]:
    """Bodies of ``<tool_call>`` blocks; an unclosed last block runs to the end of the text."""
    blocks, pos = [], text.find("<tool_call>")
    while pos >= 0 and len(blocks) < MAX_CANDIDATES:
        start = pos + len("<tool_call>")
        end = text.find("</tool_call>", start)
        if end < 0:
            blocks.append(text[start:])
            break
        blocks.append(text[start:end])
        pos = text.find("<tool_call>", end)
    return blocks


def _glm_args(block: str) -> dict:
    """GLM's ``<arg_key>k</arg_key><arg_value>v</arg_value>`` pairs, in one forward scan."""
    args, pos = {}, 0
    while len(args) < MAX_CANDIDATES:
        k0 = block.find("<arg_key>", pos)
        k1 = block.find("</arg_key>", k0) if k0 >= 0 else -1
        if k1 < 0:
            break
        opened = _VALUE_OPEN.match(block, k1 + len("</arg_key>"))
        if opened is None:
            pos = k1
            continue
        v1 = block.find("</arg_value>", opened.end())
        if v1 < 0:
            break
        key = block[k0 + len("<arg_key>"):k1].strip()
        args[key] = _coerce_args(block[opened.end():v1].strip())
        pos = v1
    return args


def _coerce_args(raw: Any) -> Any:
    """Tool arguments as a dict: a JSON string (OpenAI), an object (GLM API), or garbage (returned as is)."""
    if isinstance(raw, str):
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError:
            return raw
    return raw


def parse_text_action(text: str) -> Optional[tuple[str, Any]]:
    """A tool call written as text (see the module docstring) -> (name, arguments), or None."""
    clean = strip_markup(text)
    m = _ACTION.search(clean)
    if m:
        objs = _json_objects(clean[m.end():])
        if objs and isinstance(objs[0], dict):
            obj = objs[0]
            name = obj.get("tool") or obj.get("name")
            if isinstance(name, str):
                return name, _coerce_args(obj.get("arguments", obj.get("args", {})))
        return "<malformed action>", clean[m.end():m.end() + 200]
    for block in _tool_call_blocks(text or ""):
        objs = _json_objects(block)
        if objs and isinstance(objs[0], dict) and isinstance(objs[0].get("name"), str):
            return objs[0]["name"], _coerce_args(objs[0].get("arguments", {}))
        name = block.split("<arg_key>", 1)[0].strip()
        if name and _TOOL_NAME.fullmatch(name):
            return name, _glm_args(block)
    return None


def native_tool_calls(message: Any) -> list[tuple[str, str, Any]]:
    """(call id, name, arguments) of each native tool call; arguments decoded when JSON."""
    calls = []
    for k, call in enumerate(getattr(message, "tool_calls", None) or []):
        fn = getattr(call, "function", None)
        name = getattr(fn, "name", None) or "<unnamed>"
        calls.append((getattr(call, "id", None) or f"call_{k}", name, _coerce_args(getattr(fn, "arguments", None))))
    return calls


def _normalise(obj: dict, coords: str, n_frames: int) -> dict:
    """Map common near-miss shapes onto the EvidencePatch schema (see the module docstring)."""
    out = dict(obj)
    types = out.get("error_types", out.pop("error_type", None))
    if isinstance(types, str):
        types = [types]
    if isinstance(types, list):
        types = [re.sub(r"[_ ]error$", "", t.strip().lower()) if isinstance(t, str) else t for t in types]
        out["error_types"] = list(dict.fromkeys(types))
    if n_frames <= 1:  # a single image has no frame range to point at
        out["key_frames"] = None
    key = out.get("key_frames")
    if isinstance(key, dict) and {"start", "end"} <= set(key):
        key = [key["start"], key["end"]]
    if isinstance(key, list) and key and all(isinstance(i, int) and not isinstance(i, bool) for i in key):
        start, end = min(key), max(key)
        if start == end and n_frames > 1:  # a range, never one "answer frame" (paper Sec. 3.2)
            start, end = max(0, start - 1), min(n_frames - 1, end + 1)
        out["key_frames"] = [start, end]
    regions = []
    for region in out.get("spatial_regions") or []:
        if not isinstance(region, dict):
            regions.append(region)
            continue
        r = dict(region)
        box = r.pop("bbox_2d", None) or r.pop("bbox", None) or r.get("box")
        r["box"] = box
        declared = r.get("coords") or coords
        if isinstance(box, list) and box and all(isinstance(v, (int, float)) for v in box) and max(box) > 1.0:
            declared = "norm1000" if max(box) <= 1000 else declared
        r["coords"] = declared
        if n_frames <= 1:  # a single image: every region is on it
            r["frame"] = None
        regions.append(r)
    if "spatial_regions" in out:
        out["spatial_regions"] = regions
    if isinstance(out.get("temporal_markers"), str):
        out["temporal_markers"] = [out["temporal_markers"]]
    return out


def parse_patch(text: str, coords: str, n_frames: int) -> EvidencePatch:
    """The first JSON object in `text` that validates as a patch; ReplyError otherwise.

    Regions come back in relative coordinates; frame indices are checked against the
    `n_frames` the student saw (0 or 1 for an image item).
    """
    clean = strip_markup(text)
    if not clean:
        raise ReplyError("empty_reply", "the reply has no content")
    candidates = [o for o in _json_objects(clean) if isinstance(o, dict)]
    if not candidates:
        raise ReplyError("no_json", f"no JSON object in the reply: {clean[:120]!r}")
    problems = []
    for obj in sorted(candidates, key=lambda o: "error_types" not in o and "error_type" not in o):
        try:
            patch = EvidencePatch.model_validate(_normalise(obj, coords, n_frames))
            # Pixel boxes would need the frame size; the prompt never asks for them, so to_relative raises.
            patch = patch.model_copy(update={"spatial_regions": [r.to_relative() for r in patch.spatial_regions]})
            check_patch_frames(patch, max(n_frames, 1))
            return patch
        except (ValidationError, ValueError) as exc:
            problems.append(_short_error(exc))
    raise ReplyError("invalid_patch", f"JSON does not validate as a patch: {problems[0]}")


def _short_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()[:3])
    return str(exc)


def final_patch(content: str, reasoning: str, coords: str, n_frames: int) -> EvidencePatch:
    """The patch of a final reply (content, else the reasoning some parsers leave it in); ReplyError if none."""
    if not strip_markup(content) and reasoning:
        try:
            return parse_patch(reasoning, coords, n_frames)
        except ReplyError as exc:
            raise ReplyError("reasoning_only", "the reply holds reasoning but no content") from exc
    return parse_patch(content, coords, n_frames)
