"""Blind-test judge (`ffr.teacher.judge`) against the scripted OpenAI-compatible server."""
from __future__ import annotations

import asyncio
import json

import openai
import pytest

from ffr.patch import EVIDENCE_HEADER, EvidencePatch
from ffr.teacher.judge import BlindJudge, evidence_text, parse_letter
from ffr.teacher.schema import PatchRequestItem
from r1v.prompts import build_question_text
from scripted_openai import Reply, scripted_openai

OPTIONS = ["A. a towel", "B. a teapot", "C. a phone", "D. a bowl"]
RECORD = {"problem": "What does the woman put on the kitchen counter?", "problem_type": "multiple choice",
          "options": OPTIONS}
PARAPHRASE = EvidencePatch(error_types=["spatial"], key_frames=[2, 3], temporal_markers=["hand opens"],
                           guidance="Look at the ceramic vessel with a spout that lands on the counter.")


def make_item(gold: str | None = "B", problem_type: str = "multiple choice", options=OPTIONS) -> PatchRequestItem:
    question = build_question_text({**RECORD, "problem_type": problem_type, "options": options})
    return PatchRequestItem(sample_id="s1", video_path="v.mp4", timestamps=[0.0, 0.5, 1.0, 1.5], question=question,
                            options=options, problem_type=problem_type,
                            student_response="<think>a towel</think><answer>A</answer>", gold_answer=gold)


def user_text(body: dict) -> str:
    return body["messages"][-1]["content"]


def by_arm(with_patch: str | None, without_patch: str | None):
    """A script answering `with_patch` when the evidence block is in the prompt, else `without_patch`."""
    def script(body: dict, _index: int) -> Reply:
        return Reply(content=with_patch if EVIDENCE_HEADER in user_text(body) else without_patch, usage=(50, 3))
    return script


def run_check(script, item=None, patch=PARAPHRASE, **judge_kw):
    async def go(base_url):
        client = openai.AsyncOpenAI(base_url=base_url, api_key="test-key", max_retries=0, timeout=10)
        try:
            return await BlindJudge(client, "judge-model", **judge_kw).check(item or make_item(), patch)
        finally:
            await client.close()

    with scripted_openai(script) as (base_url, server):
        return asyncio.run(go(base_url)), server


def test_leak_when_right_only_with_the_patch():
    verdict, server = run_check(by_arm("B", "A"))
    assert verdict.leak and "3/3 correct with the patch, 0/3 without" in verdict.reason
    assert verdict.with_patch == ["B"] * 3 and verdict.without_patch == ["A"] * 3
    assert (verdict.model_calls, verdict.tokens_in, verdict.tokens_out) == (6, 300, 18)
    assert len(server.requests) == 6
    body = server.requests[0]
    assert body["model"] == "judge-model" and body["max_tokens"] == 16 and body["temperature"] == 1.0


def test_no_leak_when_wrong_with_the_patch():
    verdict, _ = run_check(by_arm("C", "A"))
    assert not verdict.leak and verdict.with_patch == ["C"] * 3


def test_no_leak_when_right_both_ways():
    verdict, _ = run_check(by_arm("<answer>B</answer>", "B"))
    assert not verdict.leak and "3/3 correct with the patch, 3/3 without" in verdict.reason
    assert verdict.without_patch == ["B"] * 3


def test_majority_vote():
    replies = iter(["B", "B", "C"])  # with the patch: 2 of 3 right

    def script(body, _i):
        return Reply(content=next(replies) if EVIDENCE_HEADER in user_text(body) else "A")
    verdict, _ = run_check(script)
    assert verdict.leak and sorted(verdict.with_patch) == ["B", "B", "C"]


def test_unparsable_replies_count_as_wrong():
    # Unparsable without the patch counts as wrong (so the parsable, right arm makes it a leak) ...
    verdict, _ = run_check(by_arm("<think>the spout means teapot</think> B", "I cannot see the video."))
    assert verdict.leak and verdict.without_patch == [None] * 3
    # ... and unparsable with the patch is never a leak.
    verdict, _ = run_check(by_arm("<think>teapot, so B", None))
    assert not verdict.leak and verdict.with_patch == [None] * 3 and verdict.without_patch == [None] * 3


def test_requests_are_text_only_and_never_carry_the_gold():
    _, server_b = run_check(by_arm("B", "A"), item=make_item(gold="B"))
    _, server_c = run_check(by_arm("B", "A"), item=make_item(gold="C"))
    for body in server_b.requests:
        for message in body["messages"]:
            assert isinstance(message["content"], str), "no content parts, so no image parts"
        blob = json.dumps(body)
        assert "image_url" not in blob and "gold" not in blob and "towel</think>" not in blob
    # The prompts do not depend on the gold answer: same questions whatever the gold is.
    key = lambda s: sorted(json.dumps(b["messages"]) for b in s.requests)  # noqa: E731
    assert key(server_b) == key(server_c)
    with_patch = [user_text(b) for b in server_b.requests if EVIDENCE_HEADER in user_text(b)]
    assert len(with_patch) == 3
    assert "ceramic vessel" in with_patch[0] and "frames 2\u20133 (1.0 s \u2013 1.5 s)" in with_patch[0]
    assert with_patch[0].count("B. a teapot") == 1  # options listed once


@pytest.mark.parametrize("item", [make_item(gold=None), make_item(problem_type="numerical", options=[]),
                                  make_item(problem_type="free-form", options=[])])
def test_not_applicable_returns_none_without_calls(item):
    verdict, server = run_check(by_arm("B", "A"), item=item)
    assert verdict is None and server.requests == []


def test_transport_error_propagates():
    with pytest.raises(openai.InternalServerError):
        run_check(lambda body, i: Reply(status=500, body="boom"))


def test_bad_gold_letter_raises():
    with pytest.raises(ValueError, match="gold answer 'F'"):
        run_check(by_arm("B", "A"), item=make_item(gold="F"))


@pytest.mark.parametrize("reply, expected", [
    ("B", "B"), (" (c). ", "C"), ("**D**", "D"), ("<answer> B </answer>", "B"), ("<answer>(b)</answer>", "B"),
    ("<think>maybe A or C</think>\nThe answer is C.", "C"), ("reasoning...</think> D", "D"),
    ("<|begin_of_box|>B<|end_of_box|>", "B"), ("A teapot is option B", "B"), ("A", "A"),
    ("<think>still thinking about B", None), ("", None), (None, None), ("I do not know.", None),
    ("Option F", None),
])
def test_parse_letter(reply, expected):
    assert parse_letter(reply, {"A", "B", "C", "D"}) == expected


def test_evidence_text_drops_unrenderable_frames():
    patch = EvidencePatch(error_types=["temporal"], key_frames=[5, 9], guidance="Watch the hand.")
    text = evidence_text(patch, [0.0, 0.5])  # frames beyond the two sampled ones
    assert "Key frames" not in text and "Guidance: Watch the hand." in text


def test_bad_settings_rejected():
    with pytest.raises(ValueError, match="samples"):
        BlindJudge(openai.AsyncOpenAI(api_key="k", base_url="http://127.0.0.1:9/v1"), "m", samples=0)
