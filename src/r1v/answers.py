"""Answer extraction and scoring primitives: the ONE parser used by RL rewards and benchmark scorers.

Everything here is a small pure function of strings and floats, so the training reward and
each benchmark's scorer read a model output the same way. Two scoring protocols exist in the
project (BENCHMARKS.md §0):

* ``"video-r1"`` (default) - the protocol of Video-R1 ``src/eval_bench.py``: answer taken from
  the first ``<answer>`` pair (``re.search``, i.e. ``extract_answer(..., occurrence="first")``),
  then the rules of its training rewards: exact option letters, strict number parsing, float32
  mean relative accuracy with a strict ``<``.
* ``"official"`` - a benchmark author's own scorer. Only pieces shared by several official
  scorers live here (VSI-Bench MRA, a lenient option-letter parser, a lenient number parser);
  benchmark-specific quirks belong to ``eval/benchmarks/<name>.py``.

Exact-match rules (case, whitespace) are decided by the caller; see ``r1v.rewards``.
"""
from __future__ import annotations

import functools
import logging
import math
import re

import jiwer
import numpy as np
from rouge_score import rouge_scorer

logger = logging.getLogger(__name__)

__all__ = [
    "extract_answer", "extract_answer_strict", "parse_option_letter", "parse_number",
    "parse_number_strict", "numbers_equal", "mean_relative_accuracy", "relative_accuracy",
    "wer_accuracy", "rouge_score", "format_ok",
]

# ---------------------------------------------------------------------------------------------
# <answer> extraction
# ---------------------------------------------------------------------------------------------
# An innermost pair: an opening tag, then a closing tag, with no other answer tag between them.
_ANSWER_PAIR = re.compile(r"<answer>((?:(?!</?answer>).)*)</answer>", re.DOTALL)
# Video-R1 eval/training regex (first pair, lazy), kept for the "first" occurrence mode.
_ANSWER_FIRST = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL)


def extract_answer_strict(text: str) -> str | None:
    """Content of the LAST complete ``<answer>...</answer>`` pair, stripped; None without one.

    Tags are case-sensitive (as in Video-R1). A pair is innermost: ``"<answer>x <answer>B</answer>"``
    gives ``"B"``; a trailing unclosed tag (truncated completion) is ignored, so
    ``"<answer>A</answer> <answer>B"`` gives ``"A"``; ``"<answer></answer>"`` gives ``""``.
    """
    last = None
    for last in _ANSWER_PAIR.finditer(text):
        pass
    return None if last is None else last.group(1).strip()


def extract_answer(text: str, occurrence: str = "last") -> str:
    """The answer a model gave: tagged content if any tag pair exists, else the whole text stripped.

    ``occurrence="last"`` (default: training rewards and the ``official`` eval protocol) uses
    :func:`extract_answer_strict`. ``occurrence="first"`` reproduces Video-R1's ``re.search`` on
    ``<answer>\\s*(.*?)\\s*</answer>`` (first pair, not innermost); the ``video-r1`` eval protocol
    uses it (``eval.benchmarks.base.video_r1_score``). The two differ only when an output holds
    several answer tags.
    Video-R1 additionally falls back to the whole output when the tags are empty; we return ``""``
    instead, which scores identically on every benchmark (whole outputs never equal a letter or
    parse as a number).
    """
    if occurrence == "last":
        found = extract_answer_strict(text)
    elif occurrence == "first":
        # Search only up to the last closing tag: every opening tag tried then has a closing tag
        # after it, which keeps the lazy regex linear on long untagged tails.
        last_close = text.rfind("</answer>")
        match = None if last_close < 0 else _ANSWER_FIRST.search(text, 0, last_close + len("</answer>"))
        found = None if match is None else match.group(1).strip()
    else:
        raise ValueError(f"occurrence must be 'first' or 'last', got {occurrence!r}")
    return text.strip() if found is None else found


# ---------------------------------------------------------------------------------------------
# Lenient option letters (for official protocols; never used by the video-r1 exact match)
# ---------------------------------------------------------------------------------------------
_EDGE_JUNK = " \t\r\n*`'\"_"


@functools.lru_cache(maxsize=32)
def _letter_patterns(letters: str) -> tuple[re.Pattern, re.Pattern, re.Pattern]:
    """(leading marker, answer phrase, standalone letter) patterns for one option-letter set."""
    if not letters or not all("A" <= ch <= "Z" for ch in letters):
        raise ValueError(f"letters must be a non-empty string of uppercase A-Z, got {letters!r}")
    cls = "[" + letters + "]"
    leading = re.compile(rf"^\(\s*({cls})\s*\)|^({cls})\s*[.):]", re.IGNORECASE)
    phrase = re.compile(rf"(?i:answer|option|choice)\s*(?:is|:)?\s*[:(\[]?\s*({cls})\b")
    standalone = re.compile(rf"(?<![A-Za-z])\(?({cls})\)?(?![A-Za-z])")
    return leading, phrase, standalone


def parse_option_letter(text: str, letters: str = "ABCDEFGHIJ") -> str | None:
    """Best-effort option letter (uppercase) in ``text``, or None when absent or ambiguous.

    Rules, first hit wins (text stripped of whitespace, quotes, ``*``, backticks):
    1. the whole text is one letter, optionally with a trailing ``.``: ``"b"``, ``"B."`` -> B;
    2. a leading marker: ``"(B)"``, ``"B."``, ``"B)"``, ``"B:"`` followed by anything
       (case-insensitive): ``"B) red car"`` -> B;
    3. the last ``answer/option/choice [is|:] X`` phrase (letter uppercase): ``"The answer is C"``;
    4. exactly one distinct standalone uppercase letter of ``letters``: ``"I pick D"`` -> D
       when ``letters="ABCD"``; ``"A careful look shows F"`` -> None (ambiguous).
    Only letters in ``letters`` count. Callers that need exact matching must not use this.
    """
    leading, phrase, standalone = _letter_patterns(letters)
    core = text.strip(_EDGE_JUNK)
    bare = core.rstrip(".").strip(_EDGE_JUNK)
    if len(bare) == 1 and bare.upper() in letters:
        return bare.upper()
    match = leading.match(core)
    if match:
        return (match.group(1) or match.group(2)).upper()
    phrases = phrase.findall(core)
    if phrases:
        return phrases[-1]
    found = set(standalone.findall(core))
    return found.pop() if len(found) == 1 else None


# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------
_NUMBER = re.compile(
    r"(?:(?<![\w.])[-+])?"  # a sign only when it is not a hyphen inside a word ("x-2")
    r"(?:\d{1,3}(?:,\d{3})+(?!,?\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?:[eE][-+]?\d+)?"
)
_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
          "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_WORD_VALUE = {w: float(i) for i, w in enumerate(_UNITS)}
_WORD_VALUE.update({w: float(20 + 10 * i) for i, w in enumerate(_TENS)})
_NUMBER_WORD = re.compile(
    rf"\b({'|'.join(_TENS)})(?:[-\s]+({'|'.join(_UNITS[1:10])}))?\b|\b({'|'.join(_UNITS)})\b",
    re.IGNORECASE,
)


def parse_number(text: str) -> float | None:
    """Lenient: the first number written in ``text``, else the first English number word; else None.

    Accepts signs, decimals, thousands commas in groups of three (``"1,234.5"`` -> 1234.5),
    scientific notation (``"2.5e-3"``) and trailing units/words (``"3 meters"`` -> 3.0). Words
    cover zero..ninety-nine (``"twenty-one"`` -> 21.0) and are used only when no digit number
    exists. Not handled: fractions (``"1/2"`` -> 1.0), European decimal commas (``"1,5"`` -> 1.0).
    Non-finite results (``"1e999"``) give None.
    """
    match = _NUMBER.search(text)
    if match:
        value = float(match.group(0).replace(",", ""))
        return value if math.isfinite(value) else None
    word = _NUMBER_WORD.search(text)
    if word is None:
        return None
    if word.group(3):
        return _WORD_VALUE[word.group(3).lower()]
    tens = _WORD_VALUE[word.group(1).lower()]
    return tens + (_WORD_VALUE[word.group(2).lower()] if word.group(2) else 0.0)


def parse_number_strict(text: str) -> float | None:
    """Video-R1 ``normalize_number``: ``float(text.replace(",", ""))`` or None.

    So ``"1,234"`` -> 1234.0, ``" 3 "`` -> 3.0, ``"1e3"`` -> 1000.0, but ``"3 meters"`` -> None.
    Unlike Video-R1, non-finite values (``"nan"``, ``"inf"``) give None.
    """
    try:
        value = float(text.replace(",", ""))
    except ValueError:  # not a number: the protocol scores it 0, the caller sees None
        return None
    return value if math.isfinite(value) else None


def numbers_equal(pred: str, gt: str) -> bool:
    """Video-R1 ``numerical`` rule on extracted answers.

    True iff both or neither contain a decimal marker (``.`` or ``,``), both parse with
    :func:`parse_number_strict`, and ``round(x, 2)`` agrees. So ``"4.0"`` vs ``"4"`` is False
    and ``"13"`` vs ``"12.97"`` is False (BENCHMARKS.md §3.5).
    """
    def has_marker(s: str) -> bool:
        return "." in s or "," in s

    if has_marker(pred) != has_marker(gt):
        return False
    p, g = parse_number_strict(pred), parse_number_strict(gt)
    return p is not None and g is not None and round(p, 2) == round(g, 2)


# Video-R1: torch.arange(0.5, 0.95 + 0.025, 0.05, float32); CPU arange evaluates start + i*step
# in double and casts, which is what this expression does.
_VIDEO_R1_THRESHOLDS = (0.5 + 0.05 * np.arange(10, dtype=np.float64)).astype(np.float32)
# Official VSI-Bench: np.linspace(.5, .95, int((.95 - .5) / .05 + 2)) -> 10 float64 points.
_OFFICIAL_THRESHOLDS = np.linspace(0.5, 0.95, int((0.95 - 0.5) / 0.05 + 2))


def mean_relative_accuracy(pred: float, gt: float, protocol: str = "video-r1") -> float:
    """VSI-Bench mean relative accuracy over thresholds θ ∈ {0.50, 0.55, ..., 0.95}.

    ``"video-r1"``: float32, ``rel = |p-g| / (|g| + 1e-8)``, counts ``rel < 1-θ`` (strict);
    ``gt == 0`` scores 1.0 only for ``pred == 0``.
    ``"official"`` (thinking-in-space): float64 linspace thresholds, ``rel = |p-g| / |g|``,
    counts ``rel <= 1-θ`` (inclusive). The official code divides by ``g`` (not ``|g|``) and
    crashes at ``g == 0``; we use ``|g|`` (identical for VSI-Bench's positive ground truths)
    and, like lmms-eval, score ``g == 0`` as 1.0 iff ``pred == 0``.
    Returns count/10 as a Python float (Video-R1's float32 mean would print 0.6000000238).
    Examples (BENCHMARKS.md §2.6): pred 2.4, gt 2 -> 0.6 video-r1, 0.7 official.
    """
    if protocol == "video-r1":
        with np.errstate(all="ignore"):  # float32 overflow of huge predictions just scores 0
            p, g = np.float32(pred), np.float32(gt)
            rel = np.abs(p - g) / (np.abs(g) + np.float32(1e-8))
            hits = rel < (np.float32(1.0) - _VIDEO_R1_THRESHOLDS)
    elif protocol == "official":
        if gt == 0:
            rel = 0.0 if pred == 0 else math.inf
        else:
            rel = abs(pred - gt) / abs(gt)
        hits = rel <= 1.0 - _OFFICIAL_THRESHOLDS
    else:
        raise ValueError(f"protocol must be 'video-r1' or 'official', got {protocol!r}")
    return int(np.count_nonzero(hits)) / len(hits)


def relative_accuracy(pred: float, gt: float) -> float:
    """Video-R1 TRAINING regression reward: ``1 - clip(|p-g| / |g|, 0, 1)`` (eps 1e-9 both sides).

    Faithful to the epsilons: an exact answer scores 1 - 1e-9/(|g| + 1e-9) (not exactly 1),
    and ``pred == gt == 0`` scores 0.0. Kept beside MRA because Video-R1's training script
    rewards regression with this while its evaluation uses MRA; ``r1v.rewards`` uses MRA.
    """
    rel = (abs(pred - gt) + 1e-9) / (abs(gt) + 1e-9)
    if math.isnan(rel):
        return 0.0
    return 1.0 - min(1.0, max(0.0, rel))


# ---------------------------------------------------------------------------------------------
# Text similarity
# ---------------------------------------------------------------------------------------------
def wer_accuracy(pred: str, gt: str) -> float:
    """``clip(1 - WER, 0, 1)`` with ``gt`` as reference, via jiwer; words split on any whitespace.

    Case and punctuation count (as in Video-R1's hand-written WER). An empty reference scores
    1.0 for an empty prediction and 0.0 otherwise (Video-R1 divides by ``max(1, len(ref))``);
    an empty prediction against a non-empty reference scores 0.0.
    """
    ref, hyp = " ".join(gt.split()), " ".join(pred.split())
    if not ref:
        return 1.0 if not hyp else 0.0
    if not hyp:
        return 0.0
    return min(1.0, max(0.0, 1.0 - float(jiwer.wer(ref, hyp))))


@functools.lru_cache(maxsize=1)
def _rouge() -> rouge_scorer.RougeScorer:
    # Built once: the Porter stemmer setup costs more than a typical score call.
    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def rouge_score(pred: str, gt: str) -> float:
    """Mean of ROUGE-1, ROUGE-2 and ROUGE-L F1 (Porter stemming), clipped to [0, 1].

    This is Video-R1's free-form reward. Consequences worth knowing: a one-word answer has no
    bigrams, so an exact one-word match scores 2/3; rouge-score's tokenizer lowercases and keeps
    only ``[a-z0-9]``, so non-ASCII text (e.g. Chinese) scores 0.0; empty text scores 0.0.
    """
    scores = _rouge().score(gt, pred)
    mean_f = (scores["rouge1"].fmeasure + scores["rouge2"].fmeasure + scores["rougeL"].fmeasure) / 3
    return min(1.0, max(0.0, mean_f))


# ---------------------------------------------------------------------------------------------
# Format
# ---------------------------------------------------------------------------------------------
_THINK_TO_ANSWER = re.compile(r"</think>\s*<answer>")


def format_ok(text: str) -> bool:
    """Video-R1 format rule: ``<think>...</think>\\s*<answer>...</answer>`` must match the WHOLE text.

    No whitespace is allowed before ``<think>`` or after ``</answer>`` (``re.fullmatch``, as in
    Video-R1; completions are decoded with special tokens skipped, so none is expected). The lazy
    ``.*?`` can still span extra tags, so ``"<think>a</think><answer>A</answer><answer>B</answer>"``
    passes; the accuracy then scores the last answer.
    """
    # Same language as re.fullmatch(r"<think>.*?</think>\s*<answer>.*?</answer>", text, re.DOTALL),
    # decided in linear time (the backtracking regex is quadratic on tag soup): the text must open
    # with <think>, close with </answer>, and hold a "</think>\s*<answer>" after the opening tag
    # that ends before the final </answer>. The leftmost such junction ends earliest, so it decides.
    if not (text.startswith("<think>") and text.endswith("</answer>")):
        return False
    junction = _THINK_TO_ANSWER.search(text, len("<think>"))
    return junction is not None and junction.end() <= len(text) - len("</answer>")
