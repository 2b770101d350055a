"""VLM-as-a-judge reward: an OpenAI-compatible model grades each answer against the gold answer.

``JudgeReward`` is a reward function for the GRPO trainer (``fn(completions, **columns)``,
name ``judge``): for every completion it asks the judge model for a score in [0, 1] on a 0.1
grid, given the question (with its options), the gold answer and the student's answer.

Contract, per completion:

- The student's answer is the content of the first ``<answer>`` pair, else the whole
  completion (as the accuracy reward reads it, ``r1v.answers.extract_answer``). An empty
  answer, or one longer than ``max_answer_chars``, scores 0.0 without a call.
- The prompt is fixed and versioned (``JUDGE_PROMPT_VERSION``, ``JUDGE_SYSTEM_PROMPT``,
  ``JUDGE_USER_TEMPLATE``); the version is part of the cache key, so a changed prompt never
  reuses old scores. Text only by default; with ``num_frames`` > 0 that many frames of the
  row's video (or its image) are sent as JPEG image parts after the text.
- The reply is parsed by ``parse_score`` ("0.7", "Score: 0.7", "7/10", ``{"score": 0.7}``,
  ``<answer>0.7</answer>``), clamped to [0, 1] and snapped to the 0.1 grid.
- A transport error, an HTTP error or an unparseable reply is retried ``max_retries`` times
  with exponential backoff (``backoff_s * 2**attempt``); when every try fails the reward is
  NaN, not 0: the trainer leaves NaN rows out of the group statistics and gives them advantage
  0 (``r1v.trainer.grpo_math.advantages_by_group``), and the failure is counted.
- Scores are cached in memory (LRU of ``cache_size`` entries) by (prompt version, model,
  rendered prompt: question, options, gold, answer; plus the media path with frames); equal
  requests within a batch are sent once.

Metrics of each call (``r1v.rewards.RewardValues.metrics``, one observation per call):
``rewards/judge_failed`` (rows left NaN), ``judge/requests`` (HTTP requests, retries
included), ``judge/cache_hits``, ``judge/tokens_in``, ``judge/tokens_out`` and, with token
prices, ``judge/cost_usd``.

Requests of one call go out concurrently (at most ``max_concurrency`` at once) on an async
SDK client that reads at most ``ffr.teacher.upstream.DEFAULT_MAX_REPLY_BYTES`` of a reply,
like the teacher's; the client lives for one call, so the reward can be called from plain
synchronous code (not from inside a running event loop).
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Optional

import openai

from r1v.answers import extract_answer
from r1v.prompts import build_question_text
from r1v.rewards import RewardValues

logger = logging.getLogger(__name__)

JUDGE_PROMPT_VERSION = "judge-reward-v1"
JUDGE_SYSTEM_PROMPT = (
    "You grade a student's answer to a question about a video. Compare the student answer with the "
    "reference answer and judge how correct it is. Reply with a single score between 0 and 1 in steps "
    "of 0.1 (1.0 = fully correct, 0.0 = wrong, empty or unrelated) and nothing else."
)
JUDGE_USER_TEMPLATE = (
    "Question:\n{question}\n\n"
    "Reference answer: {gold}\n"
    "Student answer: {answer}\n\n"
    "Score (0 to 1, steps of 0.1):"
)

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_NUMBER = r"[-+]?\d+(?:\.\d+)?|[-+]?\.\d+"
_JSON_OBJECT = re.compile(r"\{[^{}]*\}")
_FRACTION = re.compile(rf"({_NUMBER})\s*/\s*({_NUMBER})")
_LABELLED = re.compile(rf"(?:score|rating|grade)\s*[:=]?\s*({_NUMBER})", re.IGNORECASE)
_TAGGED = re.compile(rf"<answer>\s*({_NUMBER})\s*</answer>|\\boxed\{{\s*({_NUMBER})\s*\}}")
_FIRST = re.compile(_NUMBER)


def snap(score: float) -> float:
    """``score`` clamped to [0, 1] and rounded to the nearest multiple of 0.1."""
    return round(min(max(score, 0.0), 1.0) * 10) / 10


def parse_score(text: Optional[str]) -> Optional[float]:
    """The judge's score in a reply, clamped and snapped (``snap``); None when none is found.

    Tried in order, after dropping ``<think>`` blocks: a JSON object with a numeric "score";
    ``<answer>x</answer>`` or ``\\boxed{x}``; a fraction "7/10" (x / y, y > 0); a labelled
    number "Score: 0.7"; the first number of the text.
    """
    if not text:
        return None
    text = _THINK.sub(" ", text)
    for blob in _JSON_OBJECT.findall(text):
        try:
            value = json.loads(blob)
        except json.JSONDecodeError:
            continue  # braces that are not JSON: the other forms below still apply
        score = value.get("score") if isinstance(value, dict) else None
        if isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score):
            return snap(float(score))
    tagged = _TAGGED.search(text)
    if tagged:
        return snap(float(tagged.group(1) or tagged.group(2)))
    fraction = _FRACTION.search(text)
    if fraction and float(fraction.group(2)) > 0:
        return snap(float(fraction.group(1)) / float(fraction.group(2)))
    for pattern in (_LABELLED, _FIRST):
        found = pattern.search(text)
        if found:
            return snap(float(found.group(1) if pattern is _LABELLED else found.group(0)))
    return None


@dataclass
class _Outcome:
    """One judge request after its retries: the score (None = failed) and what it cost."""

    score: Optional[float]
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    error: str = ""


class JudgeReward:
    """Reward function ``judge``: per-completion scores from an OpenAI-compatible judge model.

    Call: ``reward(completions, **columns) -> RewardValues`` (N floats, NaN where the judge
    failed), reading the columns ``problem``, ``problem_type``, ``solution`` and ``options``
    (multiple choice), plus ``path`` and ``data_type`` when ``num_frames`` > 0.
    """

    __name__ = "judge"

    def __init__(self, base_url: str, model: str, api_key: Optional[str] = None, timeout_s: float = 60.0,
                 max_retries: int = 3, backoff_s: float = 1.0, max_concurrency: int = 16,
                 max_answer_chars: int = 1000, max_tokens: int = 64, temperature: float = 0.0,
                 extra_body: Optional[dict] = None, num_frames: int = 0, cache_size: int = 65536,
                 price_in_per_mtok: float = 0.0, price_out_per_mtok: float = 0.0,
                 max_reply_bytes: Optional[int] = None):
        from ffr.redact import register_secret
        from ffr.teacher.upstream import DEFAULT_MAX_REPLY_BYTES

        if not base_url or not model:
            raise ValueError("the judge reward needs judge_base_url and judge_model")
        if timeout_s <= 0 or max_retries < 0 or backoff_s < 0 or max_concurrency < 1 or max_answer_chars < 1:
            raise ValueError("need judge_timeout_s > 0, judge_max_retries >= 0, judge_backoff_s >= 0, "
                             "judge_max_concurrency >= 1, judge_max_answer_chars >= 1")
        if num_frames != 0 and num_frames < 2:
            raise ValueError(f"judge_num_frames must be 0 (text only) or >= 2, got {num_frames}")
        if price_in_per_mtok < 0 or price_out_per_mtok < 0 or cache_size < 0:
            raise ValueError("judge token prices and judge_cache_size must be >= 0")
        register_secret(api_key)  # an endpoint may echo the key in an error that we log
        self.base_url, self.model, self._api_key = base_url, model, api_key
        self.timeout_s, self.max_retries, self.backoff_s = timeout_s, max_retries, backoff_s
        self.max_concurrency, self.max_answer_chars = max_concurrency, max_answer_chars
        self.max_tokens, self.temperature, self.extra_body = max_tokens, temperature, extra_body
        self.num_frames, self.cache_size = num_frames, cache_size
        self.prices = (float(price_in_per_mtok), float(price_out_per_mtok))
        self.max_reply_bytes = max_reply_bytes or DEFAULT_MAX_REPLY_BYTES
        self._cache: OrderedDict[tuple, float] = OrderedDict()

    # ------------------------------------------------------------------ one batch
    def __call__(self, completions: list[str], **columns) -> RewardValues:
        n = len(completions)
        rewards: list[float] = [0.0] * n
        pending: dict[tuple, list[int]] = {}  # cache key -> rows that need that request
        messages: dict[tuple, list[dict]] = {}
        hits = 0
        for i, completion in enumerate(completions):
            row = {k: v[i] for k, v in columns.items()}
            answer = extract_answer(completion, occurrence="first")
            if not answer or len(answer) > self.max_answer_chars:
                continue  # 0.0 without a call: nothing (or too much) to grade
            text = JUDGE_USER_TEMPLATE.format(question=build_question_text(row).strip(),
                                              gold=extract_answer(row["solution"]), answer=answer)
            key = (JUDGE_PROMPT_VERSION, self.model, text, row.get("path") if self.num_frames else None)
            if key in self._cache:
                self._cache.move_to_end(key)
                rewards[i] = self._cache[key]
                hits += 1
                continue
            if key not in pending:
                messages[key] = self._messages(text, row)
            pending.setdefault(key, []).append(i)
        keys = list(pending)
        outcomes = asyncio.run(self._ask_all([messages[k] for k in keys])) if keys else []
        failed = 0
        for key, outcome in zip(keys, outcomes):
            score = math.nan if outcome.score is None else outcome.score
            for i in pending[key]:
                rewards[i] = score
            if outcome.score is None:
                failed += len(pending[key])
            else:
                self._remember(key, outcome.score)
        if failed:
            errors = sorted({o.error for o in outcomes if o.score is None})
            logger.warning("judge reward: %d of %d rows unscored (NaN) after %d tries each: %s",
                           failed, n, self.max_retries + 1, "; ".join(errors)[:500])
        return RewardValues(rewards, self._metrics(outcomes, failed, hits))

    def _metrics(self, outcomes: list[_Outcome], failed: int, hits: int) -> dict[str, tuple[float, int]]:
        tokens_in = sum(o.tokens_in for o in outcomes)
        tokens_out = sum(o.tokens_out for o in outcomes)
        metrics = {"rewards/judge_failed": (float(failed), 1), "judge/requests": (float(sum(o.requests for o in outcomes)), 1),
                   "judge/cache_hits": (float(hits), 1), "judge/tokens_in": (float(tokens_in), 1),
                   "judge/tokens_out": (float(tokens_out), 1)}
        if any(self.prices):
            metrics["judge/cost_usd"] = ((tokens_in * self.prices[0] + tokens_out * self.prices[1]) / 1e6, 1)
        return metrics

    def _remember(self, key: tuple, score: float) -> None:
        if self.cache_size == 0:
            return
        self._cache[key] = score
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _messages(self, text: str, row: dict) -> list[dict]:
        content: Any = text
        if self.num_frames:
            from ffr.teacher.tools import image_data_url

            content = [{"type": "text", "text": text}] + [
                {"type": "image_url", "image_url": {"url": image_data_url(img)}} for img in self._frames(row)]
        return [{"role": "system", "content": JUDGE_SYSTEM_PROMPT}, {"role": "user", "content": content}]

    def _frames(self, row: dict) -> list:
        """``num_frames`` evenly sampled frames of the row's video as PIL images (its image, for images)."""
        from PIL import Image

        from r1v.vision import VisionConfig, load_image, load_video

        cfg = VisionConfig(min_frames=self.num_frames, max_frames=self.num_frames)
        if row.get("data_type", "video") == "image":
            return [load_image(row["path"], cfg)]
        clip = load_video(row["path"], cfg)
        return [Image.fromarray(f.permute(1, 2, 0).numpy()) for f in clip.frames]

    # ------------------------------------------------------------------ requests
    async def _ask_all(self, requests: list[list[dict]]) -> list[_Outcome]:
        from ffr.teacher.upstream import capped_http_client

        # Our own retries (with backoff and the parse check) replace the SDK's.
        client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key or "EMPTY", timeout=self.timeout_s,
                                    max_retries=0, http_client=capped_http_client(self.max_reply_bytes))
        gate = asyncio.Semaphore(self.max_concurrency)
        try:
            return list(await asyncio.gather(*(self._ask(client, gate, m) for m in requests)))
        finally:
            await client.close()

    async def _ask(self, client: openai.AsyncOpenAI, gate: asyncio.Semaphore, messages: list[dict]) -> _Outcome:
        from ffr.teacher.upstream import fault_detail, usage_count

        outcome = _Outcome(score=None)
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            outcome.requests += 1
            try:
                async with gate:
                    reply = await client.chat.completions.create(
                        model=self.model, messages=messages, max_tokens=self.max_tokens,
                        temperature=self.temperature, extra_body=self.extra_body)
            except openai.OpenAIError as exc:  # counted and retried; after the last try the row is NaN
                outcome.error = fault_detail(exc)
                continue
            usage = reply.usage
            outcome.tokens_in += usage_count(getattr(usage, "prompt_tokens", None), "prompt_tokens")
            outcome.tokens_out += usage_count(getattr(usage, "completion_tokens", None), "completion_tokens")
            text = reply.choices[0].message.content if reply.choices else None
            outcome.score = parse_score(text)
            if outcome.score is not None:
                return outcome
            outcome.error = f"unparseable reply {str(text)[:80]!r}"
        return outcome
