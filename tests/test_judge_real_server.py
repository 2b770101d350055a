"""The judge reward (r1v.judge_reward) against a REAL OpenAI-compatible server: `transformers serve`.

The session fixture `served_model` (tests/conftest.py) serves the tiny random-weight Qwen2.5-VL
checkpoint on the CPU; it accepts image parts as data URLs and reports `usage`. The random
model's replies are whatever it says: each must end as a score on the 0.1 grid or as a NaN
counted in `rewards/judge_failed` (never a crash, a hang, or a silent 0), and every request's
tokens must be counted from the server's `usage`.
"""
from __future__ import annotations

import json
import math
import time

import openai
import pytest

from r1v.answers import extract_answer
from r1v.data import load_records
from r1v.judge_reward import JUDGE_SYSTEM_PROMPT, JUDGE_USER_TEMPLATE, JudgeReward, parse_score
from r1v.prompts import build_question_text

TEXT_COLUMNS = ("problem", "problem_type", "options", "solution")
MAX_TOKENS = 8
CALL_BOUND_S = 120  # a guard against a hang only: a call here takes well under a second


def _columns(records: list[dict], names=TEXT_COLUMNS) -> dict[str, list]:
    return {k: [r.get(k) for r in records] for k in names}


def _one_per_type(synthetic_dir) -> list[dict]:
    """The first record of each problem type of the synthetic set (multiple choice, numerical, OCR, ...)."""
    seen: dict[str, dict] = {}
    for rec in load_records(synthetic_dir / "train.jsonl"):
        seen.setdefault(rec["problem_type"], rec)
    return list(seen.values())


def _timed(judge: JudgeReward, completions: list[str], columns: dict):
    started = time.monotonic()
    out = judge(completions, **columns)
    elapsed = time.monotonic() - started
    assert elapsed < CALL_BOUND_S
    return out


def _assert_failures_are_unparseable_replies(caplog) -> None:
    """A row left NaN here must be a reply the parser could not read, not a refused or lost request."""
    for record in caplog.records:
        message = record.getMessage()
        if record.name == "r1v.judge_reward" and "unscored" in message:
            # The distinct errors are logged sorted: a transport or HTTP error ("APIConnectionError: ...",
            # "BadRequestError: ...") sorts before "unparseable reply ...", so it would come first.
            assert message.split("tries each: ", 1)[1].startswith("unparseable reply"), message


@pytest.mark.slow
def test_text_judge_scores_or_counts_every_reply_of_the_real_server(served_model, synthetic_dir, caplog):
    """Every non-empty answer reaches the server (a retry when its reply is unreadable); its
    reward is what the parser makes of the server's reply (a grid value, or NaN counted in
    rewards/judge_failed), tokens come from `usage`, and an empty answer is 0.0 without a request."""
    base_url, model = served_model
    records = _one_per_type(synthetic_dir)
    assert len(records) >= 3
    answers = [extract_answer(r["solution"]) for r in records]
    answers[1] = "a wrong answer"
    completions = [f"<think>looked</think><answer>{a}</answer>" for a in answers] + ["<answer></answer>"]
    columns = _columns(records + records[:1])
    judge = JudgeReward(base_url, model, max_retries=1, backoff_s=0.0, max_tokens=MAX_TOKENS, max_concurrency=4)

    out = _timed(judge, completions, columns)

    rewards, metrics = list(out), out.metrics
    assert len(rewards) == len(completions) and rewards[-1] == 0.0  # the empty answer
    called = rewards[:-1]
    for r in called:
        assert math.isnan(r) or (0.0 <= r <= 1.0 and round(r * 10) / 10 == r), r
    failed = sum(math.isnan(r) for r in called)
    assert metrics["rewards/judge_failed"] == (float(failed), 1)
    # At least one request per row and a retry per failed row; at most the two tries of each row.
    assert len(called) + failed <= metrics["judge/requests"][0] <= 2 * len(called)
    assert metrics["judge/cache_hits"] == (0.0, 1)
    tokens_in, tokens_out = metrics["judge/tokens_in"][0], metrics["judge/tokens_out"][0]
    assert tokens_in > 0 and 0 < tokens_out <= metrics["judge/requests"][0] * MAX_TOKENS
    _assert_failures_are_unparseable_replies(caplog)

    # The server decodes greedily (the checkpoint's generation config has top_k=1), so the same
    # request gets the same reply: each reward is exactly what parse_score makes of it.
    client = openai.OpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=CALL_BOUND_S)
    for rec, answer, reward in zip(records, answers, called):
        text = JUDGE_USER_TEMPLATE.format(question=build_question_text(rec).strip(),
                                          gold=extract_answer(rec["solution"]), answer=answer)
        reply = client.chat.completions.create(
            model=model, max_tokens=MAX_TOKENS, temperature=0.0,
            messages=[{"role": "system", "content": JUDGE_SYSTEM_PROMPT}, {"role": "user", "content": text}])
        expected = parse_score(reply.choices[0].message.content)
        assert (math.isnan(reward) if expected is None else reward == expected), (reply.choices[0].message.content,
                                                                                    reward)

    # Scored rows are cached; failed ones are asked again.
    again = _timed(judge, completions, columns)
    assert again.metrics["judge/cache_hits"] == (float(len(called) - failed), 1)
    assert again.metrics["rewards/judge_failed"] == (float(sum(math.isnan(r) for r in again)), 1)


@pytest.mark.slow
def test_frames_reach_the_real_server_as_images(served_model, synthetic_dir, caplog):
    """With num_frames=2 the server accepts the two JPEG data-URL parts and counts their tokens:
    the same row costs more prompt tokens than text only, and no request is refused."""
    base_url, model = served_model
    rec = next(r for r in load_records(synthetic_dir / "train.jsonl") if r["data_type"] == "video")
    cols = _columns([rec], TEXT_COLUMNS + ("path", "data_type"))
    completion = ["<think>saw it</think><answer>A</answer>"]

    def ask(num_frames: int):
        judge = JudgeReward(base_url, model, max_retries=0, backoff_s=0.0, max_tokens=MAX_TOKENS,
                            num_frames=num_frames)
        out = _timed(judge, completion, cols)
        assert out.metrics["judge/requests"] == (1.0, 1)
        assert out.metrics["rewards/judge_failed"] == (float(math.isnan(out[0])), 1)
        assert math.isnan(out[0]) or round(out[0] * 10) / 10 == out[0]
        return out.metrics["judge/tokens_in"][0], out.metrics["judge/tokens_out"][0]

    text_in, text_out = ask(0)
    frames_in, frames_out = ask(2)
    assert 0 < text_in < frames_in
    assert 0 < text_out <= MAX_TOKENS and 0 < frames_out <= MAX_TOKENS
    _assert_failures_are_unparseable_replies(caplog)


@pytest.mark.slow
def test_judge_entry_point_trains_against_the_real_server(served_model, tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    """`python -m r1v.judge_grpo` with the served model as judge: one step completes, with the
    judge's metrics logged; rows the judge could not score are NaN and counted, not 0."""
    from r1v.judge_grpo import main

    base_url, model = served_model
    out = tmp_path / "run"
    main(["--config", "local_scripts/configs/demo_tiny.yaml", "--model_name_or_path", tiny_qwen25_ckpt,
          "--dataset_name", str(synthetic_dir / "train.jsonl"), "--output_dir", str(out), "--max_steps", "1",
          "--save_strategy", "no", "--max_completion_length", "8", "--reward_funcs", "judge", "format",
          "--judge-base-url", base_url, "--judge-model", model, "--judge_max_retries", "1",
          "--judge_backoff_s", "0", "--judge_max_tokens", str(MAX_TOKENS), "--judge-timeout-s", str(CALL_BOUND_S)])
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert len(steps) == 1 and math.isfinite(steps[0]["loss"])
    assert any("train_runtime" in r for r in rows)  # the run ended normally
    step = steps[0]
    for name in ("rewards/judge_failed", "judge/requests", "judge/cache_hits", "judge/tokens_in", "judge/tokens_out"):
        assert name in step, name
    n_rows = 2 * 4  # per_device_train_batch_size x num_generations of demo_tiny.yaml
    assert 0 <= step["rewards/judge_failed"] <= n_rows
    # Each failed row was tried twice; every request was answered with usage.
    assert step["judge/requests"] >= 2 * step["rewards/judge_failed"]
    assert step["judge/tokens_in"] > 0 and step["judge/tokens_out"] > 0
    # rewards/judge is the mean over scored rows only: absent when every row failed, never a silent 0.
    assert ("rewards/judge" in step) == (step["rewards/judge_failed"] < n_rows)
