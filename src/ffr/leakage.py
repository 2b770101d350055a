"""Answer-leakage gates for evidence patches (pure functions).

A patch must never reveal the gold answer y (paper Sec. 3.2, App. A.2, Tables 1
and 6). These rule-based gates run on every patch before it reaches a student;
a patch that trips one is dropped (or regenerated) by the caller and counted.
They check the free-text fields only (guidance and temporal markers): error
types are a closed vocabulary, and key frames / regions are pointers the patch
is meant to carry.

Text is folded first (`ffr.leak_normalize`): NFKC, invisible characters removed,
Cyrillic / Greek look-alikes mapped to ASCII, case kept. Gold text and numbers are
also read with spelled-out runs joined ("b-l-u-e", "S.T.O.P") and, for gold text,
on a skeleton where digits inside words stand for letters ("ST0P", "b1ue").

Gates, in order (the first hit is reported):
1. answer phrases: "the answer is", "correct option", "answer: ..." (any gold);
2. option letters (multiple choice): the gold letter in an option context, then
   any other option letter in one (ruling options out leaks by elimination).
   Contexts: after "option" / "choice" / "answer" / "letter", a choice verb
   ("pick", "go with") or an exclusion ("except", "rule out"), in either case
   ("option b"); "(B)" / "B)" in upper case only ("(a)" is a list marker); and
   lists of two or more option letters ("B, C and D", "b or c", "A/C"). A
   lower-case "a" or "i" counts only when the clause ends or goes on as after a
   name ("go with a.", "option a is ..."), so "pick a frame" is the article;
3. gold text: the gold option's text (multiple choice) or the gold answer
   (OCR / free-form), as a whole word when it is one word, else by rapidfuzz
   partial ratio >= `FUZZY_THRESHOLD` on normalised text;
4. gold numbers: any number in the gold text, compared by value, written as
   digits, number words ("three", "dozen", "twice", "thrice") or upper-case
   Roman numerals of two or more letters ("III"). Frame indices are exempt
   (`strip_frame_indices`): a frame range that starts or ends at a numerical
   gold ("frames 3-5" for a count of 3) is a pointer, not the answer; a
   repeated or descending index, or a list's last index followed by a counted
   noun ("frames 3 and 3 flashes"), is not an index and is checked.

Known limits (documented, not hidden): paraphrases of the gold text are not
caught (the teacher's negative prompt and blind-test rule handle those); one-word
yes/no/true/false golds are not text-matched (too common in normal guidance);
a patch field shorter than a long free-form gold is not fuzzy-matched; values
the student could derive (endpoints of a duration, factors of an area) pass; a
time in seconds equal to a numerical gold is flagged even when it is only a
bound ("between 1 s and 5 s" for a count of 5), since for duration questions
it is the answer; "once", ordinals ("the fifth flash"), single-letter Roman
numerals ("V") and look-alikes outside `CONFUSABLES` pass. The labelled set
tests/fixtures/leak_labelled.jsonl measures these limits.
"""
from __future__ import annotations

import logging
import re
from typing import Optional, Sequence

from rapidfuzz import fuzz

from ffr.leak_normalize import deleet, extract_numbers, fold, join_spelled, skeleton
from ffr.patch import EvidencePatch

logger = logging.getLogger(__name__)

__all__ = ["FUZZY_THRESHOLD", "PROBLEM_TYPES", "extract_numbers", "parse_options", "patch_leaks",
           "patch_text_fields", "strip_frame_indices", "text_leaks"]

PROBLEM_TYPES = ("multiple choice", "numerical", "OCR", "free-form", "regression")
FUZZY_THRESHOLD = 90.0
# One-word golds that appear in ordinary guidance; matching them would drop good patches.
_GENERIC_WORDS = {"yes", "no", "true", "false", "none"}
_ARTICLES = {"a", "an", "the"}

_ANSWER_PHRASE = re.compile(
    r"\b(?:the|correct|right|final|true)\s+(?:answer|option|choice)\s+(?:is|was|should\s+be|would\s+be|must\s+be|=)"
    r"|\bcorrect\s+(?:answer|option|choice)\b|\banswer\s*[:=]",
    re.IGNORECASE)
_LETTER_KEYWORD = r"(?i:options?|choices?|answers?|letters?|alternatives?)"
# "should have been B", "would be B", "must be B" after a letter keyword.
_MODAL_BE = r"(?i:(?:should|would|must|could|might|will|may)\s+(?:have\s+)?(?:be|been))"
# A choice or exclusion verb before a letter ("pick B", "go with d", "everything except B").
_LETTER_VERB = (r"\b(?i:pick|choose|select|go\s+with|opt\s+for|except|besides|other\s+than|apart\s+from"
                r"|rule\s+out|ruling\s+out|eliminate|exclude|cross\s+out|discard)")
# Contexts in which either case names an option ("option b", "go with b"); see `_letter_counts`.
_LETTER_REF_ANY_CASE = [
    re.compile(_LETTER_KEYWORD + r"\s*(?:(?i:is|was)\s+|[:=#-]\s*)?\(?([A-Za-z])\)?(?![\w'])"),
    re.compile(_LETTER_KEYWORD + r"\s+" + _MODAL_BE + r"\s+\(?([A-Za-z])\)?(?![\w'])"),
    re.compile(_LETTER_VERB + r"\s+\(?([A-Za-z])\)?(?![\w'])"),
]
# Bracket forms only in upper case: "(a)" / "b)" are ordinary list markers in prose.
_LETTER_REF_UPPER = [re.compile(r"\(([A-Z])\)"), re.compile(r"(?<![\w(])([A-Z])\)")]
# Two or more single letters joined by commas, "and", "or", "/" or "&": "B, C and D", "b or c".
_LETTER_LIST = re.compile(
    r"(?<![\w'])[A-Za-z](?:\s*(?:,\s*(?:(?i:and|or|nor)\s+)?|/|&|\s(?i:and|or|nor)\s)\s*[A-Za-z])+(?![\w'])")
_SINGLE_LETTER = re.compile(r"(?<![\w'])[A-Za-z](?![\w'])")
# Lower-case "a" / "i" are words; after a letter context they name an option only when the
# clause ends there or goes on as it would after a name ("go with a, ...", "option a is ...").
_WORD_LETTERS = {"a", "i"}
_AFTER_NAMED_LETTER = re.compile(
    r"\s*(?:$|[^\w\s]|(?:and|or|nor|is|was|are|were|fits?|matches|seems?|looks?|describes?|can|cannot|could"
    r"|should|would|must|will|does|doesn't|did|isn't|wasn't|only|too|instead|either|then|because|since|but"
    r"|here|there)\b)", re.IGNORECASE)
_OPTION = re.compile(r"^\s*\(?([A-Z])\s*[.):]\s*(.*)$", re.DOTALL)
_GOLD_LETTER = re.compile(r"^\(?([A-Za-z])\)?(?:[.):]|\s|$)")
_FRAME_REF = re.compile(
    r"\b(?:key\s+)?frames?\b(?:\s*(?:range|indices|index|numbers?|#))?\s*[\[(]?\s*\d+"
    r"(?:\s*(?:[-\u2013\u2014,]|to|and|through)\s*\d+)*\s*[\])]?",
    re.IGNORECASE)
_FRAME_NUMBER = re.compile(r"\d+")
# After a list of two or more frames a plural subject takes a verb without "-s" ("frames 2 and
# 5 show"), so a following "-s" word is a counted noun ("frames 3 and 3 flashes").
_COUNTED_NOUN = re.compile(r"\s*([A-Za-z]+s|people|men|women|children|geese|mice|feet|teeth)\b")
_NOT_NOUNS = {"as", "is", "was", "has", "does", "this", "its", "thus", "plus", "always", "perhaps", "whereas",
              "across", "versus", "s"}


def _normalize(text: str) -> str:
    """Lowercase, punctuation to spaces, single spaces."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def strip_frame_indices(text: str) -> str:
    """`text` with the numbers that are frame indices blanked out, the rest kept.

    Patches are meant to point at frames ("frame 15", "frames [13, 17]", "frames 3-5"), so
    those numbers are not answers even when one equals a numerical gold. A frame reference
    is a list of strictly increasing indices: a number that repeats or goes back ("frames 3
    and 3 flashes") ends it, and so does a last index followed by a counted noun after a
    list of two or more ("frames 2 and 5 flashes"); such numbers stay and are checked.
    """
    pieces, last = [], 0
    for ref in _FRAME_REF.finditer(text):
        numbers = list(_FRAME_NUMBER.finditer(ref.group(0)))
        keep, previous = len(numbers), -1
        for k, number in enumerate(numbers):
            if int(number.group(0)) <= previous:
                keep = k
                break
            previous = int(number.group(0))
        noun = _COUNTED_NOUN.match(text, ref.end())
        if keep == len(numbers) and len(numbers) >= 2 and noun and noun.group(1).lower() not in _NOT_NOUNS:
            keep -= 1
        cut = ref.start() + (numbers[keep].start() if keep < len(numbers) else len(ref.group(0)))
        pieces += [text[last:ref.start()], " "]
        last = cut
    return "".join(pieces) + text[last:]


def parse_options(options: Sequence[str]) -> dict[str, str]:
    """["A. red", "B. blue"] -> {"A": "red", "B": "blue"}; raises ValueError naming the bad entry."""
    parsed = {}
    for k, option in enumerate(options):
        m = _OPTION.match(option)
        if not m:
            raise ValueError(f"options[{k}]: expected 'L. text', got {option!r}")
        parsed[m.group(1)] = m.group(2).strip()
    return parsed


def _gold_letter(gold_answer: str) -> str:
    m = _GOLD_LETTER.match(gold_answer.strip())
    if not m:
        raise ValueError(f"gold_answer: expected an option letter for a multiple-choice item, got {gold_answer!r}")
    return m.group(1).upper()


def _answer_phrase(text: str) -> Optional[str]:
    m = _ANSWER_PHRASE.search(text)
    return f"states the answer ({m.group(0)!r})" if m else None


def _letter_counts(text: str, letter: str, end: int) -> bool:
    """Whether a letter found in an option context ending at `end` names an option (not the word a / i)."""
    return letter not in _WORD_LETTERS or bool(_AFTER_NAMED_LETTER.match(text, end))


def _letter_refs(text: str, letters: set[str]) -> list[tuple[str, str]]:
    """(upper-case option letter, phrase) for every reference to one of `letters` in `text`."""
    found = [(m.group(1), m.group(0)) for pattern in _LETTER_REF_ANY_CASE for m in pattern.finditer(text)
             if _letter_counts(text, m.group(1), m.end())]
    found += [(m.group(1), m.group(0)) for pattern in _LETTER_REF_UPPER for m in pattern.finditer(text)]
    for m in _LETTER_LIST.finditer(text):
        listed = _SINGLE_LETTER.findall(m.group(0))
        # Every item must be an option letter: "x and y" or "I or a" in prose are not option lists.
        if all(item.upper() in letters for item in listed):
            found += [(item, m.group(0)) for item in listed]
    return [(letter.upper(), phrase) for letter, phrase in found if letter.upper() in letters]


def _letter_leak(text: str, gold_letter: str, letters: set[str]) -> Optional[str]:
    found = _letter_refs(text, letters)
    for letter, phrase in found:
        if letter == gold_letter:
            return f"names the gold option letter {letter} ({phrase!r})"
    if found:
        letter, phrase = found[0]
        return f"refers to option letter {letter} ({phrase!r}), which rules options in or out"
    return None


def _text_leak(gold_text: str, text: str, threshold: float) -> Optional[str]:
    """The gold text in `text`: plain, then on `skeleton` forms of both ("ST0P", "b1ue", "bIue")."""
    reason = _text_match(gold_text, text, threshold, gold_text)
    for one in ("l", "i"):  # "b1ue" and "m1lk": "1" stands for either
        reason = reason or _text_match(skeleton(gold_text, one), skeleton(text, one), threshold, gold_text)
    return reason


def _text_match(gold_text: str, text: str, threshold: float, shown: str) -> Optional[str]:
    words = _normalize(gold_text).split()
    while words and words[0] in _ARTICLES:
        words = words[1:]
    gold = " ".join(words)
    if not gold or gold in _GENERIC_WORDS or all(w.isdigit() for w in words):
        return None  # numeric golds are the number gate's job
    target = _normalize(text)
    if len(words) == 1:
        if re.search(rf"\b{re.escape(gold)}(?:s|es)?\b", target):
            return f"names the gold answer text {shown!r}"
        return None
    if len(target) < len(gold):
        return None
    score = fuzz.partial_ratio(gold, target)
    if score >= threshold:
        return f"contains the gold answer text {shown!r} (fuzzy score {score:.0f})"
    return None


def _number_leak(gold_text: str, text: str) -> Optional[str]:
    """A number of the gold text in `text` or its `deleet` form ("thr33"), frame indices aside."""
    gold_values = {abs(v) for v in extract_numbers(gold_text)}
    if not gold_values:
        return None
    text = strip_frame_indices(text)
    for value in extract_numbers(text) + extract_numbers(deleet(text)):
        for gold in gold_values:
            if abs(value - gold) <= 1e-9 * max(1.0, gold):
                return f"states the gold number {gold:g}"
    return None


def text_leaks(text: str, gold_answer: str, options: Sequence[str], problem_type: str,
               fuzzy_threshold: float = FUZZY_THRESHOLD) -> Optional[str]:
    """Reason why one piece of patch text leaks the gold answer, or None. Arguments as in `patch_leaks`."""
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(f"problem_type: must be one of {list(PROBLEM_TYPES)}, got {problem_type!r}")
    if not isinstance(gold_answer, str) or not gold_answer.strip():
        raise ValueError("gold_answer: must be a non-empty string")
    if "<answer>" in gold_answer:
        raise ValueError("gold_answer: pass the extracted answer (r1v.answers.extract_answer), not the "
                         f"tagged solution {gold_answer!r}")
    # Letters and answer phrases are read on folded text (case kept: "a" vs "A"); gold text
    # and numbers also on spelled-out forms joined ("b-l-u-e"), which would hide option lists.
    text = fold(text)
    reason = _answer_phrase(text)
    if reason:
        return reason
    gold_text = fold(gold_answer).strip()
    joined = join_spelled(text)
    if problem_type == "multiple choice":
        letter = _gold_letter(gold_text)
        parsed = parse_options([fold(option) for option in options])
        if parsed and letter not in parsed:
            raise ValueError(f"gold_answer: letter {letter} is not among the options {list(parsed)}")
        reason = _letter_leak(text, letter, set(parsed) or set("ABCDEFGHIJ"))
        if reason:
            return reason
        gold_text = parsed.get(letter, "")
    if problem_type not in ("numerical", "regression") and gold_text:
        reason = _text_leak(gold_text, joined, fuzzy_threshold)
        if reason:
            return reason
    return _number_leak(gold_text, joined) if gold_text else None


def patch_text_fields(patch: EvidencePatch) -> list[tuple[str, str]]:
    """(field name, text) of every free-text field of a patch, guidance first."""
    fields = [("guidance", patch.guidance)]
    fields += [(f"temporal_markers[{k}]", m) for k, m in enumerate(patch.temporal_markers)]
    return fields


def patch_leaks(patch: EvidencePatch, gold_answer: str, options: Sequence[str], problem_type: str,
                fuzzy_threshold: float = FUZZY_THRESHOLD) -> Optional[str]:
    """Why `patch` leaks the gold answer ("<field>: <reason>"), or None when it passes every gate.

    gold_answer: the extracted gold answer (an option letter such as "B" for
    multiple choice, "3" / "12.5" for numerical, text otherwise), never the tagged
    solution. options: ["A. text", ...], may be empty. problem_type: one of
    `PROBLEM_TYPES`. Raises ValueError on malformed arguments.
    """
    for name, text in patch_text_fields(patch):
        reason = text_leaks(text, gold_answer, options, problem_type, fuzzy_threshold)
        if reason:
            logger.debug("patch leak in %s: %s", name, reason)
            return f"{name}: {reason}"
    return None
