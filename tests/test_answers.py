"""Table-driven tests of r1v.answers: extraction, letters, numbers, MRA, WER, ROUGE, format."""
import math
import random
import re
import time

import numpy as np
import pytest

from r1v.answers import (
    extract_answer,
    extract_answer_strict,
    format_ok,
    mean_relative_accuracy,
    numbers_equal,
    parse_number,
    parse_number_strict,
    parse_option_letter,
    relative_accuracy,
    rouge_score,
    wer_accuracy,
)


@pytest.mark.parametrize("text, strict, lenient", [
    ("<think>hm</think><answer>B</answer>", "B", "B"),
    ("<answer>  B \n</answer>", "B", "B"),
    ("<answer>A</answer> wait <answer>C</answer>", "C", "C"),            # last pair wins
    ("<answer>x <answer>B</answer>", "B", "B"),                          # nested: innermost
    ("<answer>A</answer> then <answer>B", "A", "A"),                     # trailing unclosed ignored
    ("<answer>A</answer> stray </answer>", "A", "A"),                    # stray close ignored
    ("<answer>B", None, "<answer>B"),                                    # unclosed only
    ("<answer></answer>", "", ""),                                       # empty tags
    ("  B  ", None, "B"),                                                # no tags -> whole text
    ("", None, ""),
    ("<ANSWER>B</ANSWER>", None, "<ANSWER>B</ANSWER>"),                  # tags are case-sensitive
    ("<answer>line1\nline2</answer>", "line1\nline2", "line1\nline2"),  # DOTALL
])
def test_extract_answer(text, strict, lenient):
    assert extract_answer_strict(text) == strict
    assert extract_answer(text) == lenient


@pytest.mark.parametrize("text, expected", [
    ("<answer>A</answer><answer>C</answer>", "A"),          # Video-R1 takes the first pair
    ("<answer>x <answer>B</answer>", "x <answer>B"),        # ... and its lazy regex is not innermost
    ("no tags", "no tags"),
])
def test_extract_answer_first_occurrence(text, expected):
    assert extract_answer(text, occurrence="first") == expected


def test_extract_answer_rejects_bad_occurrence():
    with pytest.raises(ValueError, match="middle"):
        extract_answer("x", occurrence="middle")


@pytest.mark.parametrize("text, letters, expected", [
    ("B", "ABCD", "B"),
    ("b", "ABCD", "B"),
    (" B. ", "ABCD", "B"),
    ("(B)", "ABCD", "B"),
    ("(b)", "ABCD", "B"),
    ("B) red car", "ABCD", "B"),
    ("B. red car", "ABCD", "B"),
    ("C: blue", "ABCD", "C"),
    ("**C**", "ABCD", "C"),
    ("The answer is C", "ABCD", "C"),
    ("Answer: (D)", "ABCD", "D"),
    ("Option B is right, A is wrong", "ABCD", "B"),              # phrase beats standalone letters
    ("I pick D", "ABCD", "D"),                                   # "I" is not an option letter here
    ("I pick D", "ABCDEFGHIJ", None),                            # ... but ambiguous with A-J
    ("A careful look shows F", "ABCDEF", None),                  # two standalone letters
    ("E", "ABCD", None),                                         # outside the option set
    ("the answer is a dog", "ABCD", None),
    ("Blue", "ABCD", None),
    ("", "ABCD", None),
])
def test_parse_option_letter(text, letters, expected):
    assert parse_option_letter(text, letters=letters) == expected


@pytest.mark.parametrize("letters", ["", "abc", "A1"])
def test_parse_option_letter_rejects_bad_letters(letters):
    with pytest.raises(ValueError, match="letters"):
        parse_option_letter("A", letters=letters)


@pytest.mark.parametrize("text, expected", [
    ("3", 3.0), ("3.5", 3.5), ("1,234", 1234.0), ("1,234,567.25", 1234567.25), ("-2", -2.0),
    ("+5", 5.0), (".5 m", 0.5), ("3 meters", 3.0), ("There are 3 chairs.", 3.0),
    ("2.5e-3", 0.0025), ("1E3", 1000.0), ("about 1,000, maybe", 1000.0), ("1,2345", 1.0),
    ("room x-2", 2.0), ("3-4 m", 3.0), ("three", 3.0), ("Twenty-one chairs", 21.0),
    ("forty two", 42.0), ("seventeen", 17.0), ("one chair and 2 tables", 2.0),  # digits first
    ("someone", None), ("abc", None), ("", None), ("1e999", None),
])
def test_parse_number(text, expected):
    assert parse_number(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("3", 3.0), (" 3.50 ", 3.5), ("1,234", 1234.0), ("-2", -2.0), ("1e3", 1000.0),
    ("3 meters", None), ("three", None), ("", None), ("nan", None), ("inf", None),
])
def test_parse_number_strict(text, expected):
    assert parse_number_strict(text) == expected


@pytest.mark.parametrize("pred, gt, expected", [
    ("3", "3", True), ("3.00", "3.001", True), ("12.97", "12.97", True), ("1,000", "1000.0", True),
    ("4.0", "4", False),      # decimal-marker presence must agree
    ("13", "12.97", False),
    ("3.14", "3.15", False), ("-2", "-2", True), ("", "3", False), ("three", "3", False),
    ("3 meters", "3", False),
])
def test_numbers_equal(pred, gt, expected):
    assert numbers_equal(pred, gt) is expected


# Values executed with both scorers (BENCHMARKS.md §2.6) plus edges.
@pytest.mark.parametrize("pred, gt, video_r1, official", [
    (2.4, 2.0, 0.6, 0.7), (3.0, 2.0, 0.0, 0.1), (1.1, 1.0, 0.8, 0.9), (1.5, 2.0, 0.5, 0.6),
    (2.0, 2.0, 1.0, 1.0), (100.0, 2.0, 0.0, 0.0), (-2.0, 2.0, 0.0, 0.0),
    (0.0, 0.0, 1.0, 1.0), (0.1, 0.0, 0.0, 0.0),          # zero ground truth
    (float("nan"), 2.0, 0.0, 0.0), (1e300, 2.0, 0.0, 0.0),
])
def test_mean_relative_accuracy(pred, gt, video_r1, official):
    assert mean_relative_accuracy(pred, gt) == video_r1
    assert mean_relative_accuracy(pred, gt, protocol="video-r1") == video_r1
    assert mean_relative_accuracy(pred, gt, protocol="official") == official


def _torch_free_video_r1_reference(pred, gt):
    # Independent float32 restatement of Video-R1's torch code, using np.float32 arithmetic.
    thr = np.array([0.5 + 0.05 * i for i in range(10)], dtype=np.float32)
    rel = np.abs(np.float32(pred) - np.float32(gt)) / (np.abs(np.float32(gt)) + np.float32(1e-8))
    return float(np.mean(rel < (np.float32(1) - thr)))


def test_mean_relative_accuracy_matches_references_on_threshold_boundaries():
    rng = np.random.default_rng(0)
    gts = rng.integers(1, 40, size=300).astype(float)
    steps = rng.integers(-10, 11, size=300)
    preds = np.round(gts * (1 + 0.05 * steps), 2)          # lands on or near every threshold
    for p, g in zip(preds.tolist(), gts.tolist()):
        assert mean_relative_accuracy(p, g) == pytest.approx(_torch_free_video_r1_reference(p, g), abs=1e-6)
        official = np.mean(abs(p - g) / g <= 1 - np.linspace(0.5, 0.95, 10))
        assert mean_relative_accuracy(p, g, protocol="official") == pytest.approx(official, abs=1e-12)


def test_mean_relative_accuracy_rejects_unknown_protocol():
    with pytest.raises(ValueError, match="lmms"):
        mean_relative_accuracy(1.0, 1.0, protocol="lmms")


@pytest.mark.parametrize("pred, gt, expected", [
    (2.0, 2.0, 1.0), (3.0, 2.0, 0.5), (1.0, 2.0, 0.5), (5.0, 2.0, 0.0),
    (0.0, 0.0, 0.0),    # Video-R1's epsilon in the numerator: exact zero scores 0
    (float("nan"), 2.0, 0.0), (float("inf"), 2.0, 0.0),
])
def test_relative_accuracy(pred, gt, expected):
    assert relative_accuracy(pred, gt) == pytest.approx(expected, abs=1e-8)


@pytest.mark.parametrize("pred, gt, expected", [
    ("hello world", "hello world", 1.0),
    ("hello  world\n", "hello world", 1.0),       # any whitespace splits words
    ("hello there", "hello world", 0.5),
    ("a b d", "a b c", 2 / 3),
    ("Hello world", "hello world", 0.5),          # case counts
    ("x y z w v", "a", 0.0),                      # WER > 1 clips to 0
    ("", "hello world", 0.0),
    ("", "", 1.0), ("  ", "", 1.0), ("a", "", 0.0),  # empty reference
])
def test_wer_accuracy(pred, gt, expected):
    assert wer_accuracy(pred, gt) == pytest.approx(expected)


@pytest.mark.parametrize("pred, gt, expected", [
    ("the cat sat on the mat", "the cat sat on the mat", 1.0),
    ("The cats sat", "the cat sat", 1.0),          # lowercased and stemmed
    ("Paris", "Paris", 2 / 3),                     # one word: no bigram, ROUGE-2 F = 0
    ("dog", "cat", 0.0),
    ("", "cat", 0.0), ("", "", 0.0),
    ("猫在桌子上", "猫在桌子上", 0.0),               # tokenizer drops non-ASCII
])
def test_rouge_score(pred, gt, expected):
    assert rouge_score(pred, gt) == pytest.approx(expected)


def test_rouge_score_partial_overlap_is_between_zero_and_one():
    value = rouge_score("a red car parks", "a red car drives away")
    assert 0.3 < value < 0.8


@pytest.mark.parametrize("text, expected", [
    ("<think>x</think><answer>B</answer>", True),
    ("<think>\nlet me think\n</think>\n\n<answer>B</answer>", True),
    ("<think></think><answer></answer>", True),
    ("<think>a</think><answer>A</answer><answer>B</answer>", True),   # lazy .*? spans tags
    (" <think>x</think><answer>B</answer>", False),                   # no leading whitespace
    ("<think>x</think><answer>B</answer>\n", False),                  # no trailing whitespace
    ("<think>x</think> text <answer>B</answer>", False),
    ("<answer>B</answer>", False), ("<think>x</think>", False), ("B", False), ("", False),
    ("<think>x</think><answer>B", False),
])
def test_format_ok(text, expected):
    assert format_ok(text) is expected


def test_format_ok_equals_video_r1_regex_on_tag_soup():
    video_r1 = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
    pieces = ["<think>", "</think>", "<answer>", "</answer>", " ", "\n", "x", "B"]
    rng = random.Random(0)
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 9)))
        assert format_ok(text) is (video_r1.fullmatch(text) is not None), text


@pytest.mark.parametrize("soup", [
    "<think>" + "</think><answer>x" * 20000,          # quadratic for the backtracking regex
    "<answer>" * 20000 + "x" * 100000,                 # many unclosed answer tags
    "<answer>x</answer>" + "<answer>y" * 20000,
])
def test_adversarial_tag_soup_is_linear(soup):
    start = time.perf_counter()
    format_ok(soup)
    extract_answer(soup)
    extract_answer(soup, occurrence="first")
    assert time.perf_counter() - start < 2.0


def test_huge_garbage_is_fast_and_harmless():
    huge = "<think>" + "blah </think> <answer " * 20000 + "x" * 200000
    start = time.perf_counter()
    assert format_ok(huge) is False
    assert extract_answer_strict(huge) is None
    assert parse_option_letter(huge, "ABCD") is None
    assert parse_number(huge) is None
    assert time.perf_counter() - start < 2.0
    assert math.isfinite(mean_relative_accuracy(3.0, 2.0))
