"""r1v.teacher_traces against a scripted OpenAI-compatible server: filtering, resume, failures, tokens."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from r1v.data import read_records
from r1v.prompts import build_prompt_text
from r1v.toy.draw import encode_mp4
from r1v import teacher_traces
from r1v.teacher_traces import build_parser, grade_trace, main, run

sys.path.insert(0, str(Path(__file__).parent))
from scripted_openai import Reply, scripted_openai  # noqa: E402

RECORDS = [
    {"problem_id": 1, "problem": "Which shape flashes first?", "data_type": "video", "problem_type": "multiple choice",
     "options": ["A. circle", "B. square", "C. star"], "solution": "<answer>B</answer>", "path": "videos/v0.mp4"},
    {"problem_id": 2, "problem": "Which colour is the ball?", "data_type": "video", "problem_type": "multiple choice",
     "options": ["A. red", "B. blue", "C. green"], "solution": "<answer>A</answer>", "path": "videos/v1.mp4"},
    {"problem_id": 3, "problem": "How many squares appear?", "data_type": "video", "problem_type": "numerical",
     "options": [], "solution": "<answer>3</answer>", "path": "videos/v0.mp4"},
    {"problem_id": 4, "problem": "Describe the main object.", "data_type": "image", "problem_type": "free-form",
     "options": [], "solution": "<answer>a red circle</answer>", "path": "images/i0.png"},
    {"problem_id": 5, "problem": "What happens at the end?", "data_type": "video", "problem_type": "free-form",
     "options": [], "solution": "<answer>it stops</answer>", "path": "videos/missing.mp4"},
]
GOOD = {1: "<think>The square flashes at 0.5 s.</think><answer>B</answer>",
        2: "<think>It looks blue.</think><answer>B</answer>",  # wrong: gold is A
        3: "<think>One, two, three.</think>\n<answer>3</answer>"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("traces_data")
    rng = np.random.default_rng(0)
    for name in ("v0", "v1"):
        encode_mp4(rng.integers(0, 255, (8, 48, 64, 3), dtype=np.uint8), root / "videos" / f"{name}.mp4", fps=4)
    (root / "images").mkdir()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(root / "images" / "i0.png")
    path = root / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return path


def _pid(body) -> int:
    text = body["messages"][0]["content"][-1]["text"]
    return next(r["problem_id"] for r in RECORDS if text.startswith(r["problem"]))


def teacher(body, index):
    pid = _pid(body)
    if pid == 4:  # a reasoning model: the trace comes back in the reasoning field
        return Reply(content="<answer>a red circle</answer>", reasoning="A round red shape fills the image.")
    return Reply(content=GOOD[pid], usage=(100 + pid, 20))


def args_for(url, data, out, *extra):
    return build_parser().parse_args(["--base-url", url, "--model", "scripted-teacher", "--data", str(data),
                                      "--out", str(out), "--max-frames", "4", "--max-retries", "0",
                                      "--concurrency", "2", *extra])


def test_keeps_correct_traces_in_cot_schema_and_sums_tokens(tmp_path, data):
    out = tmp_path / "sft" / "sft.jsonl"
    with scripted_openai(teacher) as (url, server):
        summary = run(args_for(url, data, out))
        bodies = list(server.requests)
    assert summary.requests == 4 == len(bodies)  # the missing video never reaches the endpoint
    assert summary.by_status == {"kept": 3, "wrong": 1, "media": 1}
    assert summary.prompt_tokens == 101 + 102 + 103 + 100 and summary.completion_tokens == 80
    kept = {r["problem_id"]: r for r in read_records(out).records}  # loads as training data
    assert set(kept) == {1, 3, 4}
    assert kept[1]["process"] == "<think>The square flashes at 0.5 s.</think>"
    assert kept[1]["solution"] == "<answer>B</answer>" and kept[1]["teacher_model"] == "scripted-teacher"
    assert kept[4]["process"] == "<think>A round red shape fills the image.</think>"
    body = next(b for b in bodies if _pid(b) == 1)
    parts = body["messages"][0]["content"]
    images = [p for p in parts if p["type"] == "image_url"]
    assert 2 <= len(images) <= 4 and all(p["image_url"]["url"].startswith("data:image/jpeg;base64,") for p in images)
    assert parts[-1] == {"type": "text", "text": build_prompt_text(RECORDS[0])}
    assert body["max_tokens"] == 4096
    log = [json.loads(line) for line in (tmp_path / "sft" / "sft.jsonl.attempts.jsonl").read_text().splitlines()]
    assert sorted(a["status"] for a in log) == ["kept", "kept", "kept", "media", "wrong"]


def test_resume_skips_done_and_dropped_items_and_repairs_a_partial_line(tmp_path, data):
    out = tmp_path / "sft.jsonl"
    with scripted_openai(teacher) as (url, _):
        run(args_for(url, data, out))
    with open(out, "a") as fh:
        fh.write('{"problem_id": 9, "trunc')  # an interrupted write
    with scripted_openai(teacher) as (url, server):
        again = run(args_for(url, data, out))
        assert len(server.requests) == 0
    assert again.skipped_done == 4 and again.by_status == {"media": 1}
    assert len(read_records(out).records) == 3
    with scripted_openai(teacher) as (url, server):
        retried = run(args_for(url, data, out, "--retry-dropped"))
        assert [_pid(b) for b in server.requests] == [2]
    assert retried.by_status == {"wrong": 1, "media": 1}
    assert retried.all_runs_tokens == 4 * 20 + 101 + 102 + 103 + 100 + 102 + 20


def test_non_json_and_5xx_replies_are_counted_failures_retried_next_run(tmp_path, data, capsys):
    out = tmp_path / "sft.jsonl"

    def broken(body, index):
        pid = _pid(body)
        return Reply(body="<html>gateway</html>") if pid in (1, 3) else Reply(status=503, body="overloaded")

    with scripted_openai(broken) as (url, _):
        summary = run(args_for(url, data, out))
    assert summary.by_status == {"bad_response": 2, "http_error": 2, "media": 1}
    assert summary.prompt_tokens == 0 and not out.read_text()
    with scripted_openai(teacher) as (url, _):
        assert main(["--base-url", url, "--model", "m", "--data", str(data), "--out", str(out),
                     "--max-frames", "4", "--max-retries", "0"]) == 0
    table = capsys.readouterr().out
    assert "kept                  3" in table and "wrong" in table and "tokens total" in table


def test_format_violations_are_dropped(tmp_path, data):
    out = tmp_path / "sft.jsonl"
    with scripted_openai(lambda body, i: Reply(content="The answer is B.")) as (url, _):
        summary = run(args_for(url, data, out, "--limit", "2"))
    assert summary.by_status == {"format": 2} and summary.requests == 2


def test_cli_rejects_bad_flags(tmp_path, data, capsys):
    with pytest.raises(SystemExit):
        main(["--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--data", str(data),
              "--out", str(tmp_path / "o.jsonl"), "--max-frames", "1"])
    assert "frame policy" in capsys.readouterr().err
    assert main(["--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--data", str(tmp_path / "none.jsonl"),
                 "--out", str(tmp_path / "o.jsonl")]) == 2


def _completion(pid: int, **overrides) -> str:
    """A chat.completion body for item ``pid`` (GOOD trace), with top-level fields overridden."""
    body = {"id": "c", "object": "chat.completion", "created": 0, "model": "scripted-teacher",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": GOOD[pid]}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
    body.update(overrides)
    return json.dumps(body)


MALFORMED = [{"choices": "abc"}, {"choices": [{"message": "just text"}]}, {"choices": [{"index": 0}]},
             {"choices": [{"message": {"role": "assistant", "content": 5}}]}, {"choices": {"0": 1}}]


@pytest.mark.parametrize("malformed", MALFORMED)
def test_a_malformed_reply_is_that_items_failure_and_good_items_are_kept(tmp_path, data, malformed):
    out = tmp_path / "sft.jsonl"

    def script(body, index):
        pid = _pid(body)
        return Reply(body=_completion(pid, **malformed)) if pid == 2 else teacher(body, index)

    with scripted_openai(script) as (url, _):
        summary = run(args_for(url, data, out, "--concurrency", "1"))
    assert summary.by_status == {"kept": 3, "bad_response": 1, "media": 1}
    assert {r["problem_id"] for r in read_records(out).records} == {1, 3, 4}
    log = [json.loads(line) for line in (tmp_path / "sft.jsonl.attempts.jsonl").read_text().splitlines()]
    bad = next(a for a in log if a["status"] == "bad_response")
    assert bad["problem_id"] == 2 and bad["detail"]
    with scripted_openai(teacher) as (url, server):  # a failure, so the next run asks again
        run(args_for(url, data, out))
        assert [_pid(b) for b in server.requests] == [2]


def test_junk_usage_counts_are_unknown_never_a_crash_or_a_lost_trace(tmp_path, data, caplog):
    out = tmp_path / "sft.jsonl"
    junk = [{"prompt_tokens": "many", "completion_tokens": 5}, {"prompt_tokens": -3, "completion_tokens": True},
            "lots", None]

    def script(body, index):
        pid = _pid(body)
        if pid in (1, 3):
            return Reply(body=_completion(pid, usage=junk[index % len(junk)]))
        return teacher(body, index)

    with scripted_openai(script) as (url, _):
        summary = run(args_for(url, data, out, "--concurrency", "1"))
    assert summary.by_status == {"kept": 3, "wrong": 1, "media": 1}
    assert summary.unknown_usage >= 2 and "not a token count" in caplog.text
    kept = {r["problem_id"]: r for r in read_records(out).records}
    assert set(kept) == {1, 3, 4}
    # An attempts log holding junk counts (written by an older run) must not break reruns either.
    attempts = tmp_path / "sft.jsonl.attempts.jsonl"
    with open(attempts, "a") as fh:
        fh.write(json.dumps({"problem_id": 99, "status": "http_error", "prompt_tokens": "many",
                             "completion_tokens": [1], "detail": ""}) + "\n")
    with scripted_openai(teacher) as (url, _):
        again = run(args_for(url, data, out))
    assert again.skipped_done == 4 and again.all_runs_tokens == summary.all_runs_tokens


@pytest.mark.parametrize("flag, value", [("--timeout-s", "-1"), ("--timeout-s", "0"), ("--timeout-s", "nan"),
                                         ("--temperature", "-3"), ("--temperature", "nan"), ("--top-p", "7"),
                                         ("--top-p", "0"), ("--max-retries", "-1")])
def test_cli_rejects_sampling_and_timeout_values_that_fail_every_item(tmp_path, data, capsys, flag, value):
    with pytest.raises(SystemExit) as exc:
        main(["--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--data", str(data),
              "--out", str(tmp_path / "o.jsonl"), flag, value])
    assert exc.value.code == 2 and flag in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["folder", "empty", "missing"])
def test_an_unusable_key_file_is_one_line_naming_it(tmp_path, data, capsys, kind):
    key = tmp_path / "key"
    if kind == "folder":
        key.mkdir()
    elif kind == "empty":
        key.write_text("  \n")
    assert main(["--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--data", str(data),
                 "--out", str(tmp_path / "o.jsonl"), "--api-key-file", str(key)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --api-key-file") and str(key) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_grade_trace_grades_against_the_gold_answer():
    """The trace grader (named apart from the blind-test judge of the teacher service)."""
    mc, free = RECORDS[0], {**RECORDS[0], "problem_type": "free-form", "options": [],
                            "solution": "<answer>a red square flashes</answer>"}
    assert grade_trace("<think>the square</think><answer>B</answer>", mc, 0.5) == ("kept", "the square", "B")
    assert grade_trace("<think>the circle</think><answer>A</answer>", mc, 0.5)[0] == "wrong"
    assert grade_trace("<answer>B</answer>", mc, 0.5) == ("format", None, None)
    assert grade_trace("  ", mc, 0.5) == ("empty", None, None)
    partial = "<think>x</think><answer>a red square</answer>"
    assert grade_trace(partial, free, 0.5)[0] == "kept" and grade_trace(partial, free, 1.0)[0] == "wrong"
    assert not hasattr(teacher_traces, "judge")
