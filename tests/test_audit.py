"""Audit CLI (`python -m ffr.audit`): Table 5 / Table 10 layouts from a small hand-made patch log."""
from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import pytest

from ffr.audit import classify_reason, main
from ffr.patch import EVIDENCE_HEADER
from r1v.prompts import build_question_text
from scripted_openai import Reply, scripted_openai

OPTIONS = ["A. a towel", "B. a teapot", "C. a phone", "D. a bowl"]
MC = {"problem": "What does the woman put on the counter?", "problem_type": "multiple choice", "options": OPTIONS}


def line(sid, status="ok", patch=None, outcome="fixed", teacher="glm", detail=None, gold="B", mc=True, **kw):
    req = ({"question": build_question_text(MC), "options": OPTIONS, "problem_type": "multiple choice"} if mc else
           {"question": "How many times does the light flash?", "options": [], "problem_type": "numerical"})
    return {"step": 1, "sample_id": sid, "problem_id": sid, **req, "gold_answer": gold, "video_path": "v.mp4",
            "timestamps": [0.0, 0.5, 1.0, 1.5], "student_response": "<answer>A</answer>", "status": status,
            "error_type": None if status == "ok" else status, "detail": detail, "patch": patch, "outcome": outcome,
            "teacher_model": teacher, "prompt_version": "v1", "tokens_in": 10, "tokens_out": 5, **kw}


def patch(guidance, *types):
    return {"error_types": list(types), "key_frames": {"start": 1, "end": 2}, "guidance": guidance}


ROWS = [
    line("clean", patch=patch("Re-examine which object leaves her hand.", "spatial")),
    line("direct", patch=patch("Watch her set the teapot down.", "temporal"), outcome="not_fixed"),
    line("elim", patch=patch("Options A and D are handled earlier; watch the release.", "temporal", "spatial")),
    line("dropped", status="leak", detail="guidance: names the gold option letter B ('option B')",
         outcome="no_patch"),
    line("noanswer", status="error", detail="backend: boom", outcome="no_patch"),
    line("paraphrase", patch=patch("Look at the ceramic vessel with a spout.", "misconception"), outcome="improved"),
    line("count", patch=patch("Count each flash in the key frames.", "misconception"), teacher="qwen", gold="5",
         mc=False),
]


def run(argv):
    """(exit code, stdout) of the CLI. Not capsys: a server started while a capture fixture swaps
    sys.stderr makes uvicorn's logging setup close pytest's own capture stream (absl's handler)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "rank0.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_tables_without_judge(log, tmp_path):
    out = tmp_path / "audit"
    code, text = run([str(log), "--out", str(out)])
    assert code == 0
    # 6 proposals (the error line is none): direct = teapot + dropped-by-service, partial = elimination.
    assert "| All | 6 | 33.3% | 16.7% | 50.0% |" in text
    assert "| glm / v1 | 5 | 40.0% | 20.0% | 60.0% |" in text and "| qwen / v1 | 1 | 0.0% | 0.0% | 0.0% |" in text
    assert "| Spatial | 2 | 100.0% |" in text and "| Temporal | 2 | 50.0% |" in text
    assert "| Misconception | 2 | 50.0% |" in text and "| Overall | 5 | 60.0% |" in text
    assert "judge: off" in text
    rows = list(csv.DictReader(open(out / "table10_fix_rate.csv")))
    assert [r["Error Type"] for r in rows] == ["Spatial", "Temporal", "Misconception", "Overall"]
    assert rows[-1]["fixed_n"] == "3"
    assert (out / "table5_leakage.md").read_text().startswith("| Teacher / prompt | Patches | Direct |")
    leaks = [json.loads(x) for x in (out / "leaks.jsonl").read_text().splitlines()]
    assert [(x["sample_id"], x["class"]) for x in leaks] == [("direct", "direct"), ("elim", "partial"),
                                                            ("dropped", "direct")]
    assert leaks[0]["where"] == f"{log}:2"


def test_judge_finds_the_paraphrase(log, tmp_path):
    def script(body, _i):
        text = body["messages"][-1]["content"]
        return Reply(content="B" if EVIDENCE_HEADER in text and "ceramic" in text else "A")

    key = tmp_path / "judge.key"
    key.write_text("judge-secret\n")
    with scripted_openai(script) as (url, server):
        code, text = run([str(log), "--judge-base-url", url, "--judge-model", "j", "--judge-api-key-file", str(key),
                          "--judge-samples", "1", "--judge-extra-body", '{"top_k": 5}'])
    assert code == 0 and server.requests[0]["top_k"] == 5
    # The judge ran on the two multiple-choice patches the gates passed, one call per arm each.
    assert len(server.requests) == 4
    assert "| All | 6 | 33.3% | 33.3% | 66.7% |" in text and "judge: j (0 failed judgements)" in text


def test_judge_failures_are_counted(log):
    with scripted_openai(lambda body, i: Reply(status=400, body="bad request")) as (url, _):
        code, text = run([str(log), "--judge-base-url", url, "--judge-model", "j"])
    assert code == 0 and "judge: j (2 failed judgements)" in text


def test_bad_lines_name_file_and_line(log, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    no_question = {k: v for k, v in ROWS[0].items() if k != "question"}
    bad.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps(no_question) + "\n" + '{"torn": ')
    assert main([str(log), str(bad)]) == 2
    assert f"{bad}:2: a patch line needs ['question']" in capsys.readouterr().err
    assert main([str(log), str(bad), "--skip-bad"]) == 0
    assert "8 lines read, 2 bad lines skipped" in capsys.readouterr().out
    bad.write_text(json.dumps({**ROWS[0], "gold_answer": "F"}) + "\n")
    assert main([str(bad)]) == 2
    assert f"{bad}:1: gold_answer: letter F is not among the options" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.jsonl")]) == 2


def test_cli_rejects_bad_flags(log):
    with pytest.raises(SystemExit):
        main([str(log), "--judge-base-url", "http://127.0.0.1:1/v1"])
    with pytest.raises(SystemExit):
        main([str(log), "--judge-samples", "0"])
    with pytest.raises(SystemExit):
        main([str(log), "--judge-extra-body", "[1]"])


def test_classify_reason():
    assert classify_reason("guidance: states the gold number 3") == "direct"
    assert classify_reason("guidance: contains the gold answer text 'x' (fuzzy score 95)") == "direct"
    assert classify_reason("guidance: refers to option letter A ('Options A'), which rules options in or out") \
        == "partial"
    assert classify_reason("blind judge: 3/3 correct with the patch, 0/3 without; ...") == "partial"


@pytest.mark.parametrize("bad_line, reason", [(b'{"sample_id": "caf\xe9"}', "not UTF-8 (byte 0xe9 at column 19)"),
                                              (b"[" * 100_000 + b"]" * 100_000, "nested too deeply")])
def test_unreadable_lines_are_one_line_errors_or_skipped(log, tmp_path, capsys, bad_line, reason):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(json.dumps(ROWS[0]).encode() + b"\n" + bad_line + b"\n")
    assert main([str(log), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}:2: ") and reason in err and len(err.strip().splitlines()) == 1
    code, out = run([str(log), str(bad), "--skip-bad"])
    assert code == 0 and f"{len(ROWS) + 1} lines read, 1 bad lines skipped" in out


def test_out_at_an_existing_file_is_refused_before_any_work(log, tmp_path, capsys):
    target = tmp_path / "tables"
    target.write_text("not a folder")
    code, out = run([str(log), "--out", str(target)])
    assert code == 2 and out == "" and target.read_text() == "not a folder"
    err = capsys.readouterr().err
    assert f"--out {target} exists and is not a folder" in err and "Traceback" not in err


def test_old_format_lines_are_audited():
    """Lines written before regenerated / patch_error_types / leak_source existed still audit."""
    old = Path(__file__).parent / "fixtures" / "patch_log" / "old_format.jsonl"
    code, text = run([str(old)])
    assert code == 0 and "2 lines read, 0 bad lines skipped" in text and "| Overall | 1 | 100.0% |" in text
