"""Patch mining (`python -m ffr.mine`) against the real teacher service (annotation backend) on the
synthetic data, resume after a kill, and the persistent service cache across a restart."""
from __future__ import annotations

import contextlib
import io
import json

import pytest

from ffr.audit import main as audit_main
from ffr.mine import Rollout, log_line, main as mine_main
from ffr.teacher.backends import AnnotationBackend
from ffr.teacher.cache import ResultCache
from ffr.teacher.schema import PatchRequestItem, PatchResult
from ffr.teacher.service import create_app, serve_in_thread
from serving import refused_port


@pytest.fixture(scope="module")
def dumps(synthetic_dir, tmp_path_factory):
    """A completions dump (every record failed once, two also solved) and eval predictions."""
    records = [json.loads(x) for x in (synthetic_dir / "train.jsonl").read_text().splitlines()]
    folder = tmp_path_factory.mktemp("dumps")
    rows = [{"problem_id": r["problem_id"], "prompt": "p", "completion": f"<think>hm</think><answer>X{k}</answer>",
             "reward": 0.5, "rewards/accuracy": 0.0, "rewards/format": 1.0} for k, r in enumerate(records)]
    rows += [{"problem_id": r["problem_id"], "prompt": "p", "completion": "<answer>right</answer>", "reward": 2.0,
              "rewards/accuracy": 1.0, "rewards/format": 1.0} for r in records[:2]]
    (folder / "completions").mkdir()
    (folder / "completions" / "step_000001.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    preds = [{"id": records[0]["problem_id"], "output": "<answer>Z</answer>", "score": 0.0},
             {"id": records[1]["problem_id"], "output": "<answer>Y</answer>", "score": None},
             {"id": "not-in-the-data", "output": "<answer>Y</answer>", "score": 0.0}]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in preds))
    return {"records": records, "completions": folder / "completions", "predictions": folder / "predictions.jsonl"}


class CacheOnlyBackend(AnnotationBackend):
    """Same cache namespace as the annotation backend, but never makes a patch itself."""

    calls = 0

    def propose(self, item):
        CacheOnlyBackend.calls += 1
        return None


def argv(url, synthetic_dir, dumps, out, *extra):
    return ["--teacher-url", url, "--data", str(synthetic_dir / "train.jsonl"), "--completions",
            str(dumps["completions"]), str(dumps["predictions"]), "--out", str(out), "--batch-size", "5",
            "--no-progress", "--max-retries", "0", *extra]


def run(main, argv):
    """(exit code, stdout) of a CLI. Not capsys: a server started while a capture fixture swaps
    sys.stderr makes uvicorn's logging setup close pytest's own capture stream (absl's handler)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


def read(out):
    return [json.loads(x) for x in out.read_text().splitlines()]


def test_mine_resume_and_persistent_cache(synthetic_dir, dumps, tmp_path):
    out, cache_file = tmp_path / "mined.jsonl", tmp_path / "cache.jsonl"
    records = dumps["records"]
    app = create_app(AnnotationBackend(), str(synthetic_dir), cache_file=str(cache_file))
    with serve_in_thread(app) as url:
        code, summary = run(mine_main, argv(url, synthetic_dir, dumps, out))
        assert code == 0
        lines = read(out)
        # One item per failed rollout: every record once from the dump, plus one from the predictions.
        assert len(lines) == len(records) + 1
        with_evidence = sum(1 for r in records if r.get("evidence"))
        assert sum(x["status"] == "ok" for x in lines) == with_evidence + 1
        assert {x["status"] for x in lines} == {"ok", "skipped"}  # images carry no evidence
        assert "correct 2" in summary and "unscored 1" in summary and "unknown_problem_id 1" in summary
        ok = next(x for x in lines if x["status"] == "ok")
        assert ok["outcome"] == "mined" and ok["patch"]["error_types"] and ok["timestamps"] and ok["gold_answer"]
        # Every line is a whole patch-log record, the fields the trainer writes included.
        assert all({"regenerated", "patch_error_types", "leak_source"} <= set(x) for x in lines)
        assert ok["patch_error_types"] == ok["patch"]["error_types"] and ok["regenerated"] == 0
        assert len({x["mine_key"] for x in lines}) == len(lines)
        # Second run: nothing left to ask.
        before = out.read_bytes()
        code, summary = run(mine_main, argv(url, synthetic_dir, dumps, out))
        assert code == 0 and out.read_bytes() == before and f"already_mined {len(lines)}" in summary
        # A run killed mid-write: the first 7 lines survive, the 8th is torn; the rerun completes the file.
        out.write_bytes(b"".join(before.splitlines(keepends=True)[:7]) + before.splitlines()[7][:40])
        assert run(mine_main, argv(url, synthetic_dir, dumps, out))[0] == 0
        again = read(out)
        assert sorted(x["mine_key"] for x in again) == sorted(x["mine_key"] for x in lines)
        assert app.state.stats.snapshot()["cache_hits"] > 0  # the rerun's ok items came from the cache
    # The audit reads mined lines (no second round: no fix-rate samples).
    code, tables = run(audit_main, [str(out)])
    assert code == 0 and "| Overall | 0 | n/a |" in tables
    # A restarted service answers the ok items from the cache file alone.
    restarted = create_app(CacheOnlyBackend(), str(synthetic_dir), cache_file=str(cache_file))
    with serve_in_thread(restarted) as url:
        out2 = tmp_path / "mined2.jsonl"
        assert run(mine_main, argv(url, synthetic_dir, dumps, out2))[0] == 0
        stats = restarted.state.stats.snapshot()
    ok_patches = {x["mine_key"]: x["patch"] for x in lines if x["status"] == "ok"}
    assert {x["mine_key"]: x["patch"] for x in read(out2) if x["status"] == "ok"} == ok_patches
    assert stats["cache_hits"] == len(ok_patches) and stats["cache_hit_rate"] > 0
    assert CacheOnlyBackend.calls == len(lines) - len(ok_patches)  # only the image items reached it


def test_failed_items_are_retried(synthetic_dir, dumps, tmp_path):
    out = tmp_path / "mined.jsonl"
    with refused_port() as port:  # a port nobody listens on
        dead = f"http://127.0.0.1:{port}"
        assert run(mine_main, argv(dead, synthetic_dir, dumps, out))[0] == 1  # every item failed: not a success
    first = read(out)
    assert {(x["status"], x["error_type"]) for x in first} == {("error", "connection")}
    with serve_in_thread(create_app(AnnotationBackend(), str(synthetic_dir))) as url:
        assert run(mine_main, argv(url, synthetic_dir, dumps, out, "--no-gt"))[0] == 0
    retried = read(out)[len(first):]
    assert len(retried) == len(first) and {x["status"] for x in retried} == {"ok", "skipped"}
    ok = next(x for x in retried if x["status"] == "ok")
    # no-GT mode: the teacher saw no gold (annotation patches fall back to answer-independent guidance),
    # while the log keeps the gold for audits.
    assert ok["gold_answer"] and ok["patch"]["temporal_markers"] == []


def test_bad_inputs_name_file_and_line(synthetic_dir, tmp_path, capsys):
    dump = tmp_path / "step_000001.jsonl"
    dump.write_text(json.dumps({"problem_id": "synthetic-0-0000", "completion": "x", "reward": 0.0}) + "\n")
    base = ["--teacher-url", "http://127.0.0.1:9", "--data", str(synthetic_dir / "train.jsonl"),
            "--out", str(tmp_path / "o.jsonl"), "--no-progress"]
    assert mine_main([*base, "--completions", str(dump)]) == 2
    assert f"{dump}:1: a completions-dump row needs 'rewards/accuracy'" in capsys.readouterr().err
    dump.write_text('{"what": 1}\n')
    assert mine_main([*base, "--completions", str(dump)]) == 2
    assert f"{dump}:1: neither a completions-dump row" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mine_main([*base, "--completions", str(dump), "--batch-size", "0"])


def test_persistent_cache_file(tmp_path, caplog):
    path = tmp_path / "c.jsonl"
    ok = PatchResult.model_validate({"sample_id": "a", "status": "ok", "patch": {
        "error_types": ["spatial"], "guidance": "Look again."}})
    cache = ResultCache(4, path=path, namespace="annotation")
    cache.put("k1", ok)
    cache.put("k1", ok)  # same result again: not appended twice
    cache.put("k2", PatchResult(sample_id="b", status="skipped"))  # only ok results are kept
    assert len(path.read_text().splitlines()) == 1
    with open(path, "ab") as fh:
        fh.write(b'{"key": "k3", "namesp')  # torn by a kill
    again = ResultCache(4, path=path, namespace="annotation")
    assert again.get("k1") == ok and again.loaded == 1 and "torn last line" in caplog.text
    again.put("k3", ok)
    assert ResultCache(4, path=path, namespace="annotation").loaded == 2  # the torn bytes were cut off
    other = ResultCache(4, path=path, namespace="openai:other-model")
    assert other.get("k1") is None and other.foreign == 2
    path.write_text('{"key": "k1"}\n' + path.read_text())
    with pytest.raises(ValueError, match=rf"{path}:1: corrupt cache line"):
        ResultCache(4, path=path, namespace="annotation")


@pytest.mark.parametrize("reward, shown", [(float("nan"), "nan"), (float("inf"), "inf"), (True, "True"),
                                           ("0.0", "'0.0'")])
def test_a_non_finite_or_boolean_reward_is_an_error_naming_the_line(synthetic_dir, tmp_path, capsys, reward, shown):
    dump = tmp_path / "step_000001.jsonl"
    ok = {"problem_id": "synthetic-0-0000", "completion": "x", "rewards/accuracy": 0.0}
    dump.write_text(json.dumps(ok) + "\n" + json.dumps({**ok, "rewards/accuracy": reward}) + "\n")
    code = mine_main(["--teacher-url", "http://127.0.0.1:9", "--data", str(synthetic_dir / "train.jsonl"),
                      "--out", str(tmp_path / "o.jsonl"), "--no-progress", "--completions", str(dump)])
    err = capsys.readouterr().err
    assert code == 2 and f"{dump}:2:" in err and f"got reward {shown}" in err
    assert not (tmp_path / "o.jsonl").exists()


def test_empty_completions_are_an_error(synthetic_dir, tmp_path, capsys):
    base = ["--teacher-url", "http://127.0.0.1:9", "--data", str(synthetic_dir / "train.jsonl"),
            "--out", str(tmp_path / "o.jsonl"), "--no-progress", "--completions"]
    folder = tmp_path / "completions"
    folder.mkdir()
    assert mine_main([*base, str(folder)]) == 2
    assert f"{folder}: completions folder holds no *.jsonl file" in capsys.readouterr().err
    (folder / "step_000001.jsonl").write_text("\n")
    assert mine_main([*base, str(folder)]) == 2
    assert "no completion rows in" in capsys.readouterr().err


def test_an_item_refused_as_too_large_is_isolated_and_not_resent(synthetic_dir, tmp_path):
    """A 413 for a batch is resent item by item: the others are mined, the big one is logged once
    as refused and never sent again (it used to be re-sent, and re-appended, on every rerun)."""
    # 16 items in one batch: the client sends them as 8 calls of 2, so the big item's partner is refused too.
    records = [json.loads(x) for x in (synthetic_dir / "train.jsonl").read_text().splitlines()][:16]
    dump = tmp_path / "step_000001.jsonl"
    rows = [{"problem_id": r["problem_id"], "completion": f"<answer>X{k}</answer>", "rewards/accuracy": 0.0}
            for k, r in enumerate(records)]
    rows[1]["completion"] = "<think>" + "long " * 60_000 + "</think><answer>X</answer>"  # ~300 KB
    dump.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "mined.jsonl"
    args = ["--data", str(synthetic_dir / "train.jsonl"), "--completions", str(dump), "--out", str(out),
            "--batch-size", "16", "--no-progress", "--max-retries", "0"]
    app = create_app(AnnotationBackend(), str(synthetic_dir), max_body_bytes=100_000)
    with serve_in_thread(app) as url:
        code, summary = run(mine_main, ["--teacher-url", url, *args])
        assert code == 0 and "status/refused 1" in summary
        lines = read(out)
        assert len(lines) == 16 and [k for k, x in enumerate(lines) if x["status"] == "refused"] == [1]
        assert "error" not in {x["status"] for x in lines}
        assert lines[1]["detail"].startswith("HTTP 413") and lines[1]["problem_id"] == records[1]["problem_id"]
        size = out.stat().st_size
        code, summary = run(mine_main, ["--teacher-url", url, *args])
        assert code == 0 and "already_mined 16" in summary and out.stat().st_size == size
        code, summary = run(mine_main, ["--teacher-url", url, *args, "--retry-refused"])
        assert "status/refused 1" in summary and len(read(out)) == 17


def test_mined_line_keeps_the_teachers_leak_bookkeeping():
    """A mined leak line says how often the service regenerated and which check caught the leak,
    like the trainer's lines (the audit counts leaks by source)."""
    from ffr.patch_log import PatchLogRecord

    item = PatchRequestItem(sample_id="7#mine-x", video_path="v.mp4", timestamps=[0.0, 1.0], question="Q?",
                            options=["A. a", "B. b"], problem_type="multiple choice",
                            student_response="<answer>A</answer>", gold_answer="B")
    result = PatchResult(sample_id="7#mine-x", status="leak", error_type="leak", detail="guidance: names B",
                         regenerated=2, patch_error_types=["spatial"], leak_source="judge", teacher_model="glm")
    record = {"problem_id": 7, "solution": "<answer>B</answer>"}
    row = json.loads(json.dumps(log_line(item, result, record, Rollout("dump:3", "7", "<answer>A</answer>", 0.0),
                                         "k" * 24).to_json()))
    assert (row["regenerated"], row["patch_error_types"], row["leak_source"]) == (2, ["spatial"], "judge")
    assert row["status"] == "leak" and row["outcome"] == "no_patch" and row["step"] is None
    assert PatchLogRecord.model_validate(row).mine_key == "k" * 24
