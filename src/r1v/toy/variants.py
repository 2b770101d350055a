"""What the paper's Fig. 5 baselines need in the toy world that a real run gets from outside:
teacher traces for LUFFY and a judge endpoint for the VLM-as-a-judge reward.

- ``write_oracle_traces(rl_jsonl, out, think)``: one trace per RL item in the SFT record format
  ``python -m r1v.teacher_traces`` writes (``problem_id``, ``process``, ``solution``), with the
  warm start's reasoning text and the gold answer: a teacher that is always right and writes
  in the student's own format, the most favourable case for LUFFY.
- ``rule_judge_score(user_text)`` and ``serve_rule_judge()``: an OpenAI-compatible chat endpoint
  that grades the ``r1v.judge_reward`` prompt (``JUDGE_USER_TEMPLATE``) by a rule, not a model:
  1.0 when the student's answer equals the reference (letters by ``answers.parse_option_letter``,
  numbers by ``answers.numbers_equal``), partial credit ``1 - |a - g| / max(|g|, 1)`` on the 0.1
  grid for a number off by some (a lenient judge), else 0.0. So the judge run differs from GRPO by
  the continuous reward on counting items, not by judge mistakes; ``usage`` counts words.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Iterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from r1v.answers import extract_answer, numbers_equal, parse_number_strict, parse_option_letter
from r1v.judge_reward import JUDGE_USER_TEMPLATE, snap

JUDGE_MODEL = "toy-rule-judge"

# The two answer lines of the judge's user message, as JUDGE_USER_TEMPLATE lays them out.
_GOLD_PREFIX = "\nReference answer: "
_ANSWER_PREFIX = "\nStudent answer: "
_SCORE_PREFIX = "\n\n" + JUDGE_USER_TEMPLATE.rsplit("\n\n", 1)[1]


def write_oracle_traces(rl_jsonl: Path, out: Path, think: str) -> Path:
    """Write ``out`` (atomically; same content on every call) with one trace per record of ``rl_jsonl``."""
    lines = []
    for raw in Path(rl_jsonl).read_text(encoding="utf-8").splitlines():
        if raw.strip():
            rec = json.loads(raw)
            lines.append(json.dumps({"problem_id": rec["problem_id"], "process": think,
                                     "solution": f"<answer>{extract_answer(rec['solution'])}</answer>"}))
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, out)
    return out


def _between(text: str, start: str, end: str) -> str | None:
    i = text.find(start)
    if i < 0:
        return None
    j = text.find(end, i + len(start))
    return text[i + len(start): j if j >= 0 else len(text)].strip()


def rule_judge_score(user_text: str) -> float | None:
    """The rule's score of one judge prompt (module docstring); None when the prompt is not one."""
    gold = _between(user_text, _GOLD_PREFIX, _ANSWER_PREFIX)
    answer = _between(user_text, _ANSWER_PREFIX, _SCORE_PREFIX)
    if gold is None or answer is None:
        return None
    g = parse_number_strict(gold)
    if g is not None:
        if numbers_equal(answer, gold):
            return 1.0
        a = parse_number_strict(answer)
        return 0.0 if a is None else snap(max(0.0, 1.0 - abs(a - g) / max(abs(g), 1.0)))
    letter = parse_option_letter(answer)
    return 1.0 if letter is not None and letter == gold.strip() else 0.0


def _user_text(body: dict) -> str:
    content = next((m.get("content") for m in reversed(body.get("messages") or []) if m.get("role") == "user"), "")
    if isinstance(content, list):  # text + image parts: the rule reads the text
        content = "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content if isinstance(content, str) else ""


def build_judge_app() -> FastAPI:
    """``GET /v1/models`` and ``POST /v1/chat/completions`` answering with the rule's score."""
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": JUDGE_MODEL, "object": "model", "owned_by": "r1v.toy"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = json.loads(await request.body())
        text = _user_text(body)
        score = rule_judge_score(text)
        if score is None:
            return PlainTextResponse("not a judge-reward prompt", status_code=400)
        words = sum(len(str(m.get("content", "")).split()) for m in body.get("messages") or [])
        return JSONResponse({
            "id": f"toyjudge-{time.monotonic_ns()}", "object": "chat.completion", "created": int(time.time()),
            "model": JUDGE_MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"{score:.1f}"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": words, "completion_tokens": 1, "total_tokens": words + 1}})

    return app


@contextlib.contextmanager
def serve_rule_judge() -> Iterator[str]:
    """The rule judge on a free loopback port, in this process; yields its base URL (ending in /v1)."""
    from ffr.teacher.service import serve_in_thread

    with serve_in_thread(build_judge_app()) as url:
        yield f"{url}/v1"
