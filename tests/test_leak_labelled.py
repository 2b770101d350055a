"""Leak gates (`ffr.leakage.patch_leaks`) measured on a labelled set of hand-written patches.

tests/fixtures/leak_labelled.jsonl holds one patch per line with the question, options,
problem type, extracted gold answer, a human label (`leaky`), the kind of leak
(`leak_kind`) and a note. Kinds the rule gates are built for (answer phrase, gold letter,
elimination by letter, gold text, gold number) must be caught; paraphrases and
derivable values are the gates' documented limit (the blind-test judge is meant for
those) and are reported, not required. Rows may carry a `disguise` family (lower case,
look-alike characters, spelled or digit-for-letter forms, number words, letter lists,
counts hidden in frame references): leaky rows of a family are disguised leaks, clean rows
are the harmless near-misses that keep its precision honest. Run with ``-s`` to see the table.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from ffr.leakage import PROBLEM_TYPES, patch_leaks
from ffr.patch import ERROR_FOCUS, EvidencePatch

logger = logging.getLogger(__name__)

FIXTURE = Path(__file__).parent / "fixtures" / "leak_labelled.jsonl"
RULE_KINDS = {"answer_phrase", "gold_letter", "elimination", "gold_text", "gold_number"}
LIMIT_KINDS = {"paraphrase", "derivable"}
DISGUISES = {"case", "confusable", "spelled", "number_word", "letter_list", "frame_hidden"}
# Measured on the fixture (102 rows): precision 46/47, rule-kind recall 46/46, overall recall
# 46/57. Before text was folded the same rows gave 29/30, 29/46 and 29/57.
MIN_PRECISION = 0.95
MIN_RULE_RECALL = 0.95
MIN_OVERALL_RECALL = 0.70


def load_rows() -> list[dict]:
    rows = []
    for n, line in enumerate(FIXTURE.read_text(encoding="utf-8").splitlines(), 1):
        row = json.loads(line)
        row["patch_obj"] = EvidencePatch.model_validate(row["patch"])  # every fixture patch is schema-valid
        row["line"] = n
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def scored() -> list[dict]:
    rows = load_rows()
    for row in rows:
        row["reason"] = patch_leaks(row["patch_obj"], row["gold_answer"], row["options"], row["problem_type"])
    return rows


def rates(rows: list[dict]) -> dict[str, float]:
    tp = sum(1 for r in rows if r["leaky"] and r["reason"])
    fp = sum(1 for r in rows if not r["leaky"] and r["reason"])
    fn = sum(1 for r in rows if r["leaky"] and not r["reason"])
    return {"tp": tp, "fp": fp, "fn": fn, "precision": tp / (tp + fp) if tp + fp else 1.0,
            "recall": tp / (tp + fn) if tp + fn else 1.0}


def test_fixture_is_labelled_and_covers_every_type():
    rows = load_rows()
    assert len(rows) >= 40
    assert len({r["id"] for r in rows}) == len(rows), "ids must be unique"
    assert {r["problem_type"] for r in rows} == set(PROBLEM_TYPES)
    assert {et for r in rows for et in r["patch_obj"].error_types} == set(ERROR_FOCUS)
    for r in rows:
        assert isinstance(r["leaky"], bool) and r["note"], f"line {r['line']}: needs a bool label and a note"
        if r["leaky"]:
            assert r["leak_kind"] in RULE_KINDS | LIMIT_KINDS, f"line {r['line']}: leak_kind {r['leak_kind']!r}"
        else:
            assert r["leak_kind"] is None, f"line {r['line']}: a clean row has no leak_kind"
        assert r.get("disguise") in DISGUISES | {None}, f"line {r['line']}: disguise {r.get('disguise')!r}"
    labels = Counter(r["leaky"] for r in rows)
    assert labels[True] >= 15 and labels[False] >= 15
    for pt in PROBLEM_TYPES:
        assert {r["leaky"] for r in rows if r["problem_type"] == pt} == {True, False}, pt


def test_gate_precision_and_recall(scored):
    overall = rates(scored)
    rule = rates([r for r in scored if not r["leaky"] or r["leak_kind"] in RULE_KINDS])
    limit = [r for r in scored if r["leak_kind"] in LIMIT_KINDS]
    lines = [f"leak gates on {len(scored)} labelled patches ({sum(r['leaky'] for r in scored)} leaky):",
             f"  overall        precision {overall['precision']:.3f}  recall {overall['recall']:.3f}  "
             f"(tp {overall['tp']}, fp {overall['fp']}, fn {overall['fn']})",
             f"  rule kinds     precision {rule['precision']:.3f}  recall {rule['recall']:.3f}",
             f"  paraphrase / derivable leaks caught: {sum(bool(r['reason']) for r in limit)}/{len(limit)}"]
    for kind in sorted(RULE_KINDS | LIMIT_KINDS):
        of_kind = [r for r in scored if r["leak_kind"] == kind]
        lines.append(f"    {kind:<14} {sum(bool(r['reason']) for r in of_kind)}/{len(of_kind)}")
    lines.append("  disguises: leaks caught, near-misses flagged")
    for family in sorted(DISGUISES):
        leaky = [r for r in scored if r.get("disguise") == family and r["leaky"]]
        clean = [r for r in scored if r.get("disguise") == family and not r["leaky"]]
        lines.append(f"    {family:<14} {sum(bool(r['reason']) for r in leaky)}/{len(leaky)}  "
                     f"{sum(bool(r['reason']) for r in clean)}/{len(clean)}")
    lines += [f"  false positive: {r['id']}: {r['reason']}" for r in scored if not r["leaky"] and r["reason"]]
    lines += [f"  missed: {r['id']} ({r['leak_kind']})" for r in scored if r["leaky"] and not r["reason"]]
    report = "\n".join(lines)
    logger.info("%s", report)
    print("\n" + report)
    assert overall["precision"] >= MIN_PRECISION
    assert rule["recall"] >= MIN_RULE_RECALL
    assert overall["recall"] >= MIN_OVERALL_RECALL


def test_every_disguise_family_has_leaks_and_near_misses():
    rows = load_rows()
    for family in DISGUISES:
        assert {r["leaky"] for r in rows if r.get("disguise") == family} == {True, False}, family


def test_disguised_leaks_are_caught_and_near_misses_pass(scored):
    disguised = [r for r in scored if r.get("disguise")]
    assert [r["id"] for r in disguised if r["leaky"] and not r["reason"]] == []
    assert [r["id"] for r in disguised if not r["leaky"] and r["reason"]] == []


def test_reasons_name_the_field(scored):
    for r in scored:
        if r["reason"]:
            assert r["reason"].split(":", 1)[0] in ("guidance", *(f"temporal_markers[{k}]" for k in range(5)))
