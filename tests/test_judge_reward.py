"""VLM-as-a-judge reward (r1v.judge_reward) against the scripted OpenAI-compatible server."""
from __future__ import annotations

import math

import pytest

from r1v.judge_grpo import JudgeRewardArguments, build_judge_reward, parse_args
from r1v.judge_reward import JUDGE_PROMPT_VERSION, JUDGE_SYSTEM_PROMPT, JudgeReward, parse_score, snap
from scripted_openai import Reply, scripted_openai

OPTIONS = ["A. a towel", "B. a teapot", "C. a phone"]
COLUMNS = {"problem": ["What is on the counter?"] * 4, "problem_type": ["multiple choice"] * 4,
           "options": [OPTIONS] * 4, "solution": ["<answer>B</answer>"] * 4}


def _c(answer: str) -> str:
    return f"<think>hm</think><answer>{answer}</answer>"


def _judge(url: str, **kw) -> JudgeReward:
    return JudgeReward(url, "scripted-teacher", api_key="sk-judge-test-key", backoff_s=0.0, **kw)


@pytest.mark.parametrize("text, score", [
    ("0.7", 0.7), ("Score: 0.7", 0.7), ("score=0.4", 0.4), ("7/10", 0.7), ('{"score": 0.7}', 0.7),
    ('Here: {"score": 1}', 1.0), ("<answer>0.73</answer>", 0.7), ("\\boxed{0.25}", 0.2), ("1.4", 1.0),
    ("Score: -0.3", 0.0), ("<think>0.1 or 0.2?</think>0.9", 0.9), ("3/4", 0.8), ("no idea", None), ("", None),
    (None, None),
])
def test_parse_score_forms_clamp_and_snap(text, score):
    assert parse_score(text) == score


def test_snap_grid():
    assert [snap(x) for x in (0.04, 0.06, 0.449, 0.95001, 2.0, -1.0)] == [0.0, 0.1, 0.4, 1.0, 1.0, 0.0]


def test_scores_prompt_tokens_and_cost():
    def script(body, _):  # requests of one call go out concurrently: answer by content, not by order
        if "Student answer: B" in body["messages"][1]["content"]:
            return Reply(content="Score: 0.8", usage=(120, 5))
        return Reply(content="0.1", usage=(100, 3))

    with scripted_openai(script) as (url, server):
        judge = _judge(url, price_in_per_mtok=2.0, price_out_per_mtok=10.0)
        out = judge([_c("B"), _c("C")], **{k: v[:2] for k, v in COLUMNS.items()})
    assert list(out) == [0.8, 0.1]
    assert out.metrics["judge/tokens_in"] == (220.0, 1) and out.metrics["judge/tokens_out"] == (8.0, 1)
    assert out.metrics["judge/cost_usd"][0] == pytest.approx((220 * 2 + 8 * 10) / 1e6)
    assert out.metrics["rewards/judge_failed"] == (0.0, 1) and out.metrics["judge/requests"] == (2.0, 1)
    body = next(b for b in server.requests if "Student answer: B" in b["messages"][1]["content"])
    assert body["model"] == "scripted-teacher" and body["temperature"] == 0.0
    assert body["messages"][0] == {"role": "system", "content": JUDGE_SYSTEM_PROMPT}
    user = body["messages"][1]["content"]
    assert isinstance(user, str)  # text only by default
    assert "What is on the counter?" in user and "B. a teapot" in user
    assert "Reference answer: B" in user and "Student answer: B" in user
    assert server.auth[0] == "Bearer sk-judge-test-key"


def test_empty_and_overlong_answers_score_zero_without_a_call():
    with scripted_openai([Reply(content="1.0")]) as (url, server):
        judge = _judge(url, max_answer_chars=10)
        out = judge(["<answer></answer>", "", _c("x" * 11), _c("B")], **COLUMNS)
    assert list(out) == [0.0, 0.0, 0.0, 1.0]
    assert len(server.requests) == 1


def test_retries_then_success():
    with scripted_openai([Reply(status=500), Reply(content="I cannot tell"), Reply(content="0.6")]) as (url, server):
        out = _judge(url, max_retries=2)([_c("B")], **{k: v[:1] for k, v in COLUMNS.items()})
    assert list(out) == [0.6] and len(server.requests) == 3
    assert out.metrics["judge/requests"] == (3.0, 1) and out.metrics["rewards/judge_failed"] == (0.0, 1)


def test_failure_after_retries_is_nan_and_counted(caplog):
    with scripted_openai([Reply(status=503, body="down sk-judge-test-key")]) as (url, server):
        judge = _judge(url, max_retries=1)
        out = judge([_c("B"), _c("B"), _c("")], **{k: v[:3] for k, v in COLUMNS.items()})
    assert math.isnan(out[0]) and math.isnan(out[1]) and out[2] == 0.0
    assert len(server.requests) == 2  # one request (two tries) for the two equal answers
    assert out.metrics["rewards/judge_failed"] == (2.0, 1)
    assert "2 of 3 rows unscored" in caplog.text and "sk-judge-test-key" not in caplog.text
    assert judge._cache == {}  # a failure is never cached


def test_cache_hits_within_and_across_calls_keyed_by_version_question_gold_answer():
    with scripted_openai(lambda body, i: Reply(content="0.5" if "Student answer: C" in body["messages"][1]["content"]
                                               else "1.0")) as (url, server):
        judge = _judge(url)
        first = judge([_c("B"), _c("B"), _c("C"), _c("C")], **COLUMNS)
        assert list(first) == [1.0, 1.0, 0.5, 0.5] and len(server.requests) == 2
        second = judge([_c("C"), _c("B")], **{k: v[:2] for k, v in COLUMNS.items()})
        assert list(second) == [0.5, 1.0] and len(server.requests) == 2
        assert second.metrics["judge/cache_hits"] == (2.0, 1) and second.metrics["judge/tokens_in"] == (0.0, 1)
        other_gold = {**COLUMNS, "solution": ["<answer>C</answer>"] * 4}
        judge([_c("B")], **{k: v[:1] for k, v in other_gold.items()})
        assert len(server.requests) == 3  # another gold answer is another key
    assert all(key[0] == JUDGE_PROMPT_VERSION for key in judge._cache)


def test_lru_cache_evicts_oldest():
    with scripted_openai([Reply(content="0.3")]) as (url, server):
        judge = _judge(url, cache_size=1)
        cols = {k: v[:1] for k, v in COLUMNS.items()}
        judge([_c("A")], **cols)
        judge([_c("C")], **cols)
        judge([_c("A")], **cols)
    assert len(server.requests) == 3 and len(judge._cache) == 1


def test_frames_are_sent_as_images_when_asked(synthetic_dir):
    from r1v.data import load_records

    rec = next(r for r in load_records(synthetic_dir / "train.jsonl") if r["data_type"] == "video")
    cols = {k: [rec.get(k)] for k in ("problem", "problem_type", "options", "solution", "path", "data_type")}
    with scripted_openai([Reply(content="0.9")]) as (url, server):
        out = _judge(url, num_frames=2)([_c("A")], **cols)
    assert list(out) == [0.9]
    parts = server.requests[0]["messages"][1]["content"]
    assert parts[0]["type"] == "text"
    assert [p["type"] for p in parts[1:]] == ["image_url", "image_url"]
    assert parts[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_flags_build_the_judge_with_key_file_and_dashed_spellings(tmp_path):
    key = tmp_path / "judge.key"
    key.write_text("sk-from-a-file-123\n")
    configs = parse_args(["--output_dir", str(tmp_path / "o"), "--reward_funcs", "judge", "format",
                          "--judge-base-url", "http://127.0.0.1:9/v1", "--judge-model", "j",
                          "--judge-api-key-file", str(key), "--judge_price_in_per_mtok", "1.5",
                          "--judge-extra-body", '{"chat_template_kwargs": {"enable_thinking": false}}'])
    judge = build_judge_reward(configs[3])
    assert judge._api_key == "sk-from-a-file-123" and judge.prices == (1.5, 0.0)
    assert judge.extra_body == {"chat_template_kwargs": {"enable_thinking": False}}
    with pytest.raises(ValueError, match="--judge_api_key_file"):
        build_judge_reward(JudgeRewardArguments(judge_base_url="u", judge_model="m",
                                                judge_api_key_file=str(tmp_path / "missing")))
    with pytest.raises(ValueError, match="judge_base_url and judge_model"):
        build_judge_reward(JudgeRewardArguments())
    with pytest.raises(ValueError, match="--judge_extra_body"):
        build_judge_reward(JudgeRewardArguments(judge_base_url="u", judge_model="m", judge_extra_body="[1]"))
