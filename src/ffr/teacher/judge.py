"""Blind-test leak judge: can a text-only model answer from the patch alone?

The rule gates (`ffr.leakage`) miss paraphrases ("the ceramic vessel with a
spout" for "a teapot"). The blind test catches those by behaviour instead of
wording: a judge model that cannot see the video is asked for the option
letter from the question and options, once WITH the rendered evidence block
and once WITHOUT it, `samples` times each. The patch leaks iff the judge's
majority is correct with the patch and its majority is wrong (or unparsable)
without it: the patch alone, not prior knowledge or the question's wording,
carried the answer.

Contract:
- Only multiple-choice items with a gold letter and options are judged;
  `check` returns None for the rest (no gold in no-GT mode, numerical, OCR,
  free-form, regression).
- The judge sees question, options and the patch's evidence block (error focus,
  key frames with their times, temporal markers, regions, guidance; the times
  matter: a key-frame range can give away "when" questions). It never sees the
  gold answer, the student's response, or any image.
- Replies are parsed leniently (`parse_letter`); an unparsable reply counts as
  wrong. A transport or HTTP error propagates as the SDK's exception; the
  caller turns it into the item's status.
- All 2 x `samples` requests go out concurrently; the verdict reports the calls
  and the endpoint's token usage so the service can add them to the item's cost.
Use a different model from the teacher where possible (self-agreement), and for
reasoning models pass `extra_body` that turns thinking off (e.g. vLLM's
``{"chat_template_kwargs": {"enable_thinking": False}}``): `max_tokens` is small.
"""
from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field

import openai

from ffr.leakage import parse_options
from ffr.patch import EvidencePatch, render_evidence_block
from ffr.redact import register_secret
from ffr.teacher.schema import PatchRequestItem
from ffr.teacher.upstream import usage_count

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = ("You answer multiple-choice questions about a video that you cannot see. Use only the text "
                 "you are given. Reply with the letter of the most likely option and nothing else.")
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_BOX = re.compile(r"<\|(?:begin|end)_of_box\|>")
_ANSWER_TAG = re.compile(r"<answer>\s*\(?([A-Za-z])\)?[.):]?\s*</answer>", re.IGNORECASE)
_BARE = re.compile(r"^\W*([A-Za-z])\W*$")
_STANDALONE = re.compile(r"(?<![A-Za-z0-9'])([A-Z])(?![A-Za-z0-9'])")
_GOLD_LETTER = re.compile(r"^\(?([A-Za-z])\)?(?:[.):]|\s|$)")


@dataclass(frozen=True)
class JudgeVerdict:
    """Outcome of one blind test. `with_patch` / `without_patch`: the parsed letter of
    each sample (None = unparsable); `reason` explains the verdict in one line."""

    leak: bool
    reason: str
    with_patch: list[str | None] = field(default_factory=list)
    without_patch: list[str | None] = field(default_factory=list)
    model_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0


def parse_letter(reply: str | None, letters: set[str]) -> str | None:
    """The option letter a judge reply names, or None.

    Drops ``<think>`` blocks (and everything before a lone ``</think>``) and GLM box
    tags, then takes, in order: ``<answer>X</answer>``; a reply that is just a
    letter ("B", "(b).", "**C**"); the first standalone capital letter among
    `letters`, skipping an "A" used as an article ("A cat ...").
    """
    if not reply:
        return None
    text = _BOX.sub("", _THINK.sub("", reply))
    if "</think>" in text.lower():
        text = re.split(r"</think>", text, flags=re.IGNORECASE)[-1]
    if "<think>" in text.lower():  # an unfinished thought holds no answer
        return None
    for pattern in (_ANSWER_TAG, _BARE):
        m = pattern.search(text.strip())
        if m and m.group(1).upper() in letters:
            return m.group(1).upper()
    for m in _STANDALONE.finditer(text):
        letter = m.group(1)
        if letter == "A" and re.match(r"\s+[a-z]", text[m.end():]):
            continue
        if letter in letters:
            return letter
    return None


def evidence_text(patch: EvidencePatch, timestamps: list[float]) -> str:
    """The evidence block the student would read; without frame lines if they cannot be rendered."""
    try:
        return render_evidence_block(patch, timestamps)
    except ValueError as exc:  # out-of-range frames / pixel boxes without a frame size: keep the text fields
        logger.debug("judge renders the patch without frame lines: %s", exc)
        bare = patch.model_copy(update={"key_frames": None, "spatial_regions": []})
        return render_evidence_block(bare, timestamps)


def judge_messages(item: PatchRequestItem, letters: list[str], evidence: str | None) -> list[dict]:
    """Chat messages of one blind-test request (text only); `evidence` None = the no-patch arm."""
    question = item.question.strip()
    if not all(opt.strip() in question for opt in item.options):  # build_question_text already lists them
        question += "\nOptions:\n" + "\n".join(opt.strip() for opt in item.options)
    parts = [f"Question:\n{question}"]
    if evidence is not None:
        parts.append(f"Notes about the video:\n{evidence}")
    parts.append(f"Answer with one letter ({', '.join(letters)}).")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n\n".join(parts)}]


class BlindJudge:
    """Text-only blind test through an OpenAI-compatible endpoint (see the module docstring)."""

    def __init__(self, client: openai.AsyncOpenAI, model: str, samples: int = 3, max_tokens: int = 16,
                 temperature: float = 1.0, extra_body: dict | None = None):
        if samples < 1 or max_tokens < 1 or temperature < 0:
            raise ValueError(f"need samples >= 1, max_tokens >= 1, temperature >= 0; got {samples}, "
                             f"{max_tokens}, {temperature}")
        if not model:
            raise ValueError("model: the judge needs a model name")
        register_secret(getattr(client, "api_key", None))  # the judge's key: masked in every detail and log
        self.client, self.model, self.samples = client, model, samples
        self.max_tokens, self.temperature, self.extra_body = max_tokens, temperature, extra_body

    @staticmethod
    def applicable(item: PatchRequestItem) -> bool:
        """True for multiple-choice items with a gold answer and options."""
        return item.gold_answer is not None and item.problem_type == "multiple choice" and bool(item.options)

    async def check(self, item: PatchRequestItem, patch: EvidencePatch) -> JudgeVerdict | None:
        """Blind-test `patch` for `item`; None when not applicable. Raises ValueError for a gold
        letter that is not among the options, and the SDK's errors on transport faults."""
        if not self.applicable(item):
            return None
        letters = list(parse_options(item.options))
        m = _GOLD_LETTER.match(item.gold_answer.strip())
        if not m or m.group(1).upper() not in letters:
            raise ValueError(f"item {item.sample_id}: gold answer {item.gold_answer!r} is not one of the "
                             f"option letters {letters}")
        gold = m.group(1).upper()
        with_msgs = judge_messages(item, letters, evidence_text(patch, item.timestamps))
        without_msgs = judge_messages(item, letters, None)
        calls = [self._ask(with_msgs, set(letters)) for _ in range(self.samples)]
        calls += [self._ask(without_msgs, set(letters)) for _ in range(self.samples)]
        tasks = [asyncio.ensure_future(c) for c in calls]
        try:
            answers = await asyncio.gather(*tasks)
        except BaseException:  # the first fault propagates as is; the other calls are not needed any more
            for t in tasks:
                t.cancel()
            raise
        with_patch = [a for a, _, _ in answers[:self.samples]]
        without_patch = [a for a, _, _ in answers[self.samples:]]
        right_with = sum(a == gold for a in with_patch)
        right_without = sum(a == gold for a in without_patch)
        n = self.samples
        leak = 2 * right_with > n and 2 * (n - right_without) > n
        reason = (f"blind judge: {right_with}/{n} correct with the patch, {right_without}/{n} without; "
                  + ("the patch alone gives the answer away" if leak else "no leak"))
        return JudgeVerdict(leak=leak, reason=reason, with_patch=with_patch, without_patch=without_patch,
                            model_calls=len(answers), tokens_in=sum(t for _, t, _ in answers),
                            tokens_out=sum(t for _, _, t in answers))

    async def _ask(self, messages: list[dict], letters: set[str]) -> tuple[str | None, int, int]:
        """(parsed letter, prompt tokens, completion tokens) of one judge request."""
        resp = await self.client.chat.completions.create(
            model=self.model, messages=messages, max_tokens=self.max_tokens, temperature=self.temperature,
            extra_body=self.extra_body)
        usage = resp.usage
        tokens = (usage_count(getattr(usage, "prompt_tokens", None), "prompt_tokens"),
                  usage_count(getattr(usage, "completion_tokens", None), "completion_tokens"))
        content = resp.choices[0].message.content if resp.choices else None
        letter = parse_letter(content, letters)
        if letter is None:
            logger.debug("unparsable judge reply: %r", (content or "")[:200])
        return (letter, *tokens)
