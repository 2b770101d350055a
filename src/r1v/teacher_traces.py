"""SFT-on-teacher data (paper Table 4 / Table 11): full reasoning traces from an OpenAI-compatible model.

For every training record (Video-R1 schema, ``r1v.data``) the teacher gets the student's own R1
prompt (``r1v.prompts.build_prompt_text``: ``<think>...</think><answer>...</answer>``) with the
video's frames as image parts (JPEG data URLs; frames sampled and sized by ``r1v.vision`` with
the student's policy, ``--max-frames`` at most). A trace is kept only when its answer is correct by
the training reward (``r1v.rewards.accuracy_reward``): exactly right for multiple choice and
numerical, accuracy >= ``--min-graded-accuracy`` for the graded types. Kept traces are written
as Video-R1 CoT records: the input record plus ``process`` = ``<think>...</think>``, ``solution``
= the gold ``<answer>...</answer>``, and ``teacher_*`` fields.

Resumable: the output is appended one record at a time, and every attempt is logged to
``<out>.attempts.jsonl``; a rerun skips problem_ids already in the output and those whose trace
was definitively dropped (wrong answer, bad format, empty; ``--retry-dropped`` asks again),
and retries failures (HTTP error, non-JSON or malformed reply, connection, unreadable media).
A reply's token counts that are missing or not counts are logged and summed as unknown.
Prints a summary: requests, kept, dropped by reason, tokens (this run and all runs).
"""
from __future__ import annotations

import argparse
import base64
import io
import logging
import math
import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import openai
from PIL import Image
from tqdm import tqdm

from ffr.endpoint import add_deprecated_alias, add_frame_policy_args, frame_policy, read_key_file
from ffr.redact import redact
from r1v.answers import extract_answer_strict
from r1v.data import json_records, read_records
from r1v.jsonl import append_jsonl, repair_torn_tail
from r1v.prompts import build_prompt_text
from r1v.rewards import accuracy_reward
from r1v.vision import VisionConfig, load_image, load_video

logger = logging.getLogger(__name__)

BINARY_TYPES = ("multiple choice", "numerical")
DEFINITIVE = ("wrong", "format", "empty")  # drops a rerun does not ask again by default
FAILURES = ("http_error", "bad_response", "connection", "media")


@dataclass
class Outcome:
    """The result of one request: ``status`` is "kept", a DEFINITIVE drop or a FAILURE."""

    problem_id: object
    status: str
    prompt_tokens: int | None = 0  # None: the reply's usage count was missing or junk (unknown)
    completion_tokens: int | None = 0
    detail: str = ""
    record: dict | None = None


@dataclass
class Summary:
    requests: int = 0  # requests sent to the endpoint (client retries not counted)
    skipped_done: int = 0
    by_status: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    all_runs_tokens: int = 0
    unknown_usage: int = 0  # replies of this run whose token counts were missing or junk

    def add(self, o: Outcome) -> None:
        self.requests += o.status != "media"  # unreadable media never reach the endpoint
        self.by_status[o.status] += 1
        self.prompt_tokens += o.prompt_tokens or 0
        self.completion_tokens += o.completion_tokens or 0
        self.unknown_usage += o.status != "media" and (o.prompt_tokens is None or o.completion_tokens is None)

    def table(self) -> str:
        dropped = {k: v for k, v in sorted(self.by_status.items()) if k != "kept"}
        lines = [f"requests              {self.requests}", f"skipped (done)        {self.skipped_done}",
                 f"kept                  {self.by_status['kept']}",
                 f"dropped               {sum(dropped.values())}"]
        lines += [f"  {k:<20}{v}" for k, v in dropped.items()]
        lines += [f"tokens prompt         {self.prompt_tokens}", f"tokens completion     {self.completion_tokens}",
                  f"tokens total          {self.prompt_tokens + self.completion_tokens}",
                  f"tokens all runs       {self.all_runs_tokens}"]
        if self.unknown_usage:
            lines.append(f"tokens unknown        {self.unknown_usage} repl{'y' if self.unknown_usage == 1 else 'ies'}")
        return "\n".join(lines)


def _data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def media_parts(rec: dict, vision: VisionConfig) -> list[dict]:
    """Image parts for one record: every sampled video frame, or the image (data URLs)."""
    if rec["data_type"] == "image":
        images = [load_image(rec["path"], vision)]
    else:
        clip = load_video(rec["path"], vision)  # frames (T, 3, H, W) uint8
        images = [Image.fromarray(f.permute(1, 2, 0).numpy()) for f in clip.frames]
    return [{"type": "image_url", "image_url": {"url": _data_url(im)}} for im in images]


def completion_text(message) -> str:
    """The trace as ``<think>..</think>..``: a reasoning field (``reasoning_content`` of vLLM's
    reasoning parsers, or ``reasoning``) is put back in front of the content, and a content
    whose opening tag was consumed by the chat template gets it back."""
    content = message.content or ""
    reasoning = getattr(message, "reasoning_content", None) or getattr(message, "reasoning", None)
    if "<think>" not in content and reasoning:
        return f"<think>{reasoning}</think>{content}"
    if "<think>" not in content and "</think>" in content:
        return "<think>" + content
    return content


def reply_text(resp) -> str:
    """The trace text of a chat-completions reply; ValueError naming what is malformed.

    The client builds replies without validating them, so "choices" may be any JSON value and
    a message's content need not be a string; anything but the documented shape is refused here
    instead of failing later with an AttributeError that would stop the whole run.
    """
    choices = getattr(resp, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise ValueError(f"'choices' must be a non-empty list, got {type(choices).__name__}")
    message = getattr(choices[0], "message", None)
    if message is None or isinstance(message, (str, list, dict)):
        raise ValueError(f"choices[0] has no message object (got {type(choices[0]).__name__})")
    for name in ("content", "reasoning_content", "reasoning"):
        value = getattr(message, name, None)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"choices[0].message.{name} must be a string or null, got {type(value).__name__}")
    return completion_text(message)


def token_count(usage, name: str, pid=None) -> int | None:
    """``usage.<name>`` as a count, or None (unknown) for a missing or junk value, which is logged.

    Junk counts ("many", -1, 3.5, true) must neither crash the run nor poison the attempts log
    that later runs sum up.
    """
    value = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if value is not None:
        logger.warning("problem_id=%r: usage.%s %r is not a token count; logged as unknown", pid, name, value)
    return None


def grade_trace(text: str, rec: dict, min_graded_accuracy: float) -> tuple[str, str | None, str | None]:
    """(status, think text, answer) of a teacher trace, graded against ``rec``'s gold answer with the
    training reward: "kept" (a non-empty <think> and a correct answer: exactly right for multiple
    choice and numerical, at least ``min_graded_accuracy`` for the graded types), "wrong",
    "format" (no <think>...</think> or no parseable answer after it) or "empty".

    Not to be confused with the blind-test judge (``ffr.teacher.judge``), which asks a model
    whether a patch leaks the answer.
    """
    if not text.strip():
        return "empty", None, None
    start = text.find("<think>")
    end = text.find("</think>", start + 1) if start >= 0 else -1
    answer = extract_answer_strict(text[end:]) if end >= 0 else None
    if start < 0 or end < 0 or not answer or not text[start + len("<think>"):end].strip():
        return "format", None, None
    think = text[start + len("<think>"):end].strip()
    score = accuracy_reward(f"<answer>{answer}</answer>", rec["solution"], rec["problem_type"])
    needed = 1.0 if rec["problem_type"] in BINARY_TYPES else min_graded_accuracy
    return ("kept" if score >= needed else "wrong"), think, answer


def ask(client: openai.OpenAI, args, rec: dict, vision: VisionConfig) -> Outcome:
    """One teacher request for ``rec``; every failure becomes an Outcome, never an exception."""
    pid = rec["problem_id"]
    try:
        parts = media_parts(rec, vision)
    except (OSError, ValueError) as exc:  # missing or undecodable media: counted, retried next run
        return Outcome(pid, "media", detail=str(exc))
    messages = [{"role": "user", "content": [*parts, {"type": "text", "text": build_prompt_text(rec)}]}]
    try:
        resp = client.chat.completions.create(model=args.model, messages=messages, max_tokens=args.max_tokens,
                                              temperature=args.temperature, top_p=args.top_p)
    except openai.APIStatusError as exc:
        return Outcome(pid, "http_error", detail=f"HTTP {exc.status_code}: {str(exc)[:200]}")
    except (openai.APIConnectionError, openai.APITimeoutError) as exc:
        return Outcome(pid, "connection", detail=str(exc)[:200])
    except (ValueError, openai.APIResponseValidationError) as exc:  # a reply that is not JSON
        return Outcome(pid, "bad_response", detail=f"{type(exc).__name__}: {str(exc)[:200]}")
    usage = getattr(resp, "usage", None)
    tokens = (token_count(usage, "prompt_tokens", pid), token_count(usage, "completion_tokens", pid))
    try:
        text = reply_text(resp)
    except ValueError as exc:  # a malformed reply is this item's failure, retried by the next run
        return Outcome(pid, "bad_response", *tokens, detail=str(exc)[:200])
    status, think, answer = grade_trace(text, rec, args.min_graded_accuracy)
    if status != "kept":
        return Outcome(pid, status, *tokens, detail=(answer or "")[:200])
    out = {k: v for k, v in rec.items() if k != "rel_path"}
    out.update(path=os.path.relpath(rec["path"], os.path.abspath(Path(args.out).parent)),
               process=f"<think>{think}</think>", solution=rec["solution"], teacher_model=args.model,
               teacher_answer=answer, teacher_usage={"prompt_tokens": tokens[0], "completion_tokens": tokens[1]})
    return Outcome(pid, "kept", *tokens, record=out)


def _read_lines(path: Path) -> list[dict]:
    """JSONL rows of an earlier run's file ([] when absent); a corrupt line is an error naming it."""
    if not path.is_file():
        return []
    try:
        return [row for _, row in json_records(path)]
    except ValueError as exc:
        raise ValueError(f"{exc}; fix or remove the line to resume") from exc


def done_ids(out: Path, attempts: Path, retry_dropped: bool) -> tuple[set[str], int]:
    """(problem_ids not to ask again, tokens spent by earlier runs)."""
    done = {str(r["problem_id"]) for r in _read_lines(out)}
    logged = _read_lines(attempts)
    if not retry_dropped:
        done |= {str(a["problem_id"]) for a in logged if a["status"] in DEFINITIVE}
    # token_count: a junk count logged by an older run is unknown, not a TypeError on every rerun.
    return done, sum((token_count(a, "prompt_tokens", a.get("problem_id")) or 0)
                     + (token_count(a, "completion_tokens", a.get("problem_id")) or 0) for a in logged)


def run(args) -> Summary:
    """Ask the teacher for every record not done yet; append kept traces and attempts."""
    out = Path(args.out)
    attempts = out.with_name(out.name + ".attempts.jsonl")
    records = read_records(args.data, args.data_root, on_error="raise", check_media=False).records
    for path in (out, attempts):
        repair_torn_tail(path)  # appends must start on a fresh line
    done, earlier_tokens = done_ids(out, attempts, args.retry_dropped)
    pending = [r for r in records if str(r["problem_id"]) not in done]
    todo = pending[: args.limit]
    summary = Summary(skipped_done=len(records) - len(pending))
    # read_key_file registers the key: an endpoint may echo it in an error, masked in the attempts log
    api_key = read_key_file(args.api_key_file, "--api-key-file") if args.api_key_file else "EMPTY"
    client = openai.OpenAI(base_url=args.base_url, api_key=api_key, timeout=args.timeout_s,
                           max_retries=args.max_retries)
    vision = frame_policy(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    for path in (out, attempts):  # both exist after a run, even one that kept nothing
        path.touch()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        futures = [pool.submit(ask, client, args, rec, vision) for rec in todo]
        bar = tqdm(as_completed(futures), total=len(futures), desc="teacher traces", unit="item")
        for fut in bar:
            o = fut.result()
            summary.add(o)
            # Each row in one write as soon as it is known: a kill loses at most the row in flight.
            if o.record is not None:
                append_jsonl(out, [o.record])
            append_jsonl(attempts, [{"problem_id": o.problem_id, "status": o.status, "prompt_tokens": o.prompt_tokens,
                                     "completion_tokens": o.completion_tokens, "detail": redact(o.detail)}])
            if o.status in FAILURES:
                logger.warning("problem_id=%r: %s (%s)", o.problem_id, o.status, o.detail)
            bar.set_postfix(kept=summary.by_status["kept"], tokens=summary.prompt_tokens + summary.completion_tokens)
    summary.all_runs_tokens = earlier_tokens + summary.prompt_tokens + summary.completion_tokens
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m r1v.teacher_traces", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", required=True, help="OpenAI-compatible endpoint, e.g. http://host:8000/v1")
    p.add_argument("--model", required=True, help="model name the endpoint serves")
    p.add_argument("--data", required=True, help="training records (Video-R1 JSON/JSONL)")
    p.add_argument("--data-root", help="folder the records' paths resolve against (default: the file's folder)")
    p.add_argument("--out", required=True, help="SFT output JSONL (appended; resumable)")
    p.add_argument("--api-key-file", help="file holding the endpoint's API key (keeps it out of argv)")
    p.add_argument("--max-tokens", type=int, default=4096, help="completion token limit per trace")
    # The frames sent are those the student sees: the flags are VisionConfig's, as in the service.
    add_frame_policy_args(p, title="frame policy (the student's: must match training)")
    add_deprecated_alias(p, "--frames", "--max-frames", "max_frames", type=int)
    add_deprecated_alias(p, "--frame-max-pixels", "--video-max-pixels", "video_max_pixels", type=int)
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling top-p")
    p.add_argument("--min-graded-accuracy", type=float, default=0.6,
                   help="accuracy a graded type (OCR, free-form, regression) needs to be kept")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    p.add_argument("--timeout-s", type=float, default=600.0, help="per-request timeout")
    p.add_argument("--max-retries", type=int, default=2, help="client retries of a failed request")
    p.add_argument("--limit", type=int, default=None, help="ask about at most this many items")
    p.add_argument("--retry-dropped", action="store_true", help="ask again about items dropped as wrong/format/empty")
    return p


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, low in (("max_tokens", 1), ("concurrency", 1)):
        if getattr(args, name) < low:
            parser.error(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
    try:
        frame_policy(args)  # a policy VisionConfig refuses is a usage error, found before any request
    except ValueError as exc:
        parser.error(str(exc))
    if args.limit is not None and args.limit < 0:
        parser.error(f"--limit must be >= 0, got {args.limit}")
    if not 0.0 <= args.min_graded_accuracy <= 1.0:
        parser.error(f"--min-graded-accuracy must be in [0, 1], got {args.min_graded_accuracy}")
    # Written so that NaN fails too: a bad timeout fails every item, bad sampling values every request.
    if not 0.0 < args.timeout_s < math.inf:
        parser.error(f"--timeout-s must be a positive number of seconds, got {args.timeout_s}")
    if not 0.0 <= args.temperature <= 2.0:
        parser.error(f"--temperature must be in [0, 2], got {args.temperature}")
    if not 0.0 < args.top_p <= 1.0:
        parser.error(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.max_retries < 0:
        parser.error(f"--max-retries must be >= 0, got {args.max_retries}")
    try:
        summary = run(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
