"""Records that parse but cannot be scored right, repeated ids, and data that gives no record."""
import json
import logging
from types import SimpleNamespace

import pytest

from r1v.data import load_mixture, load_records, read_mixture, read_records
from r1v.grpo import load_training_records


def rec(pid, **over):
    base = {"problem_id": pid, "problem": f"question {pid}?", "data_type": "video",
            "problem_type": "multiple choice", "options": ["A. yes", "B. no"],
            "solution": "<answer>A</answer>", "path": "v.mp4"}
    base.update(over)
    return base


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path.parent / "v.mp4").write_bytes(b"\0")
    return path


@pytest.mark.parametrize("bad, match", [
    (rec(7, solution="<answer>C</answer>"), r"answer 'C' is not one of the options' letters \['A', 'B'\]"),
    (rec(7, solution="<answer>yes</answer>"), r"answer 'yes' is not one of the options' letters"),
    (rec(7, solution="<answer>a</answer>"), r"answer 'a' is not one of"),
    (rec(7, options=["1. yes", "2. no"]), r"option 1 '1. yes' is not lettered 'A'"),
    (rec(7, options=["yes", "no"]), r"option 1 'yes' is not lettered 'A'"),
    (rec(7, options=["A. yes", "C. no"]), r"option 2 'C. no' is not lettered 'B'"),
    (rec(7, problem_type="numerical", options=[], solution="<answer>three</answer>"),
     r"numerical answer 'three' does not parse as a number"),
    (rec(7, problem_type="regression", options=[], solution="<answer>3 m</answer>"),
     r"regression answer '3 m' does not parse"),
])
def test_unscoreable_answers_name_file_line_and_id(tmp_path, bad, match):
    path = write(tmp_path / "d.jsonl", [rec(1), bad])
    with pytest.raises(ValueError, match=r"d\.jsonl:2 \(problem_id=7\): .*" + match):
        load_records(path)
    result = read_records(path, on_error="skip")
    assert [r["problem_id"] for r in result.records] == [1] and result.skipped == 1


def test_accepted_answer_forms(tmp_path):
    rows = [rec(1, options=["(A) yes", "(B) no", "(C) maybe"], solution="<answer>C</answer>"),
            rec(2, options=["A) yes", "B) no"], solution="B"),  # untagged gold is used whole, as the reward does
            rec(3, problem_type="numerical", options=None, solution="<answer>1,234.5</answer>"),
            rec(4, problem_type="regression", solution="<answer>-2e3</answer>"),
            rec(5, problem_type="OCR", options=None, solution="<answer>ABC12</answer>"),
            rec(6, problem_type="free-form", solution="<answer>It moves left.</answer>")]
    assert [r["problem_id"] for r in load_records(write(tmp_path / "ok.jsonl", rows))] == [1, 2, 3, 4, 5, 6]


def test_repeated_problem_id_in_a_file(tmp_path, caplog):
    path = write(tmp_path / "d.jsonl", [rec(1), rec(2), rec(1), rec("2")])
    with pytest.raises(ValueError, match=r"d\.jsonl:3 \(problem_id=1\): problem_id repeats the record at .*d\.jsonl:1"):
        load_records(path)
    with caplog.at_level(logging.WARNING, logger="r1v.data"):
        result = read_records(path, on_error="skip")
    assert [r["problem_id"] for r in result.records] == [1, 2] and result.skipped == 2
    assert "d.jsonl:4 (problem_id='2'): problem_id repeats the record at" in caplog.text


def test_repeated_problem_id_across_a_mixture(tmp_path):
    write(tmp_path / "a.jsonl", [rec(1), rec(2)])
    write(tmp_path / "b.jsonl", [rec(3), rec(2)])
    mix = tmp_path / "mix.yaml"
    mix.write_text("datasets:\n  - json_path: a.jsonl\n  - json_path: b.jsonl\n")
    with pytest.raises(ValueError, match=r"b\.jsonl:2 \(problem_id=2\): problem_id repeats the record at .*a\.jsonl:2"):
        load_mixture(mix, base_dir=tmp_path)
    result = read_mixture(mix, base_dir=tmp_path, on_error="skip")
    assert [r["problem_id"] for r in result.records] == [1, 2, 3] and result.skipped == 1


def test_mixture_entry_with_no_record_is_refused(tmp_path):
    write(tmp_path / "a.jsonl", [rec(1), rec(2)])
    (tmp_path / "empty.jsonl").write_text("")
    write(tmp_path / "bad.jsonl", [rec(5, problem_type="essay")])
    mix = tmp_path / "mix.yaml"
    for entry, why in [("json_path: a.jsonl\n    sampling_strategy: random:0", "sampling_strategy 'random:0'"),
                       ("json_path: empty.jsonl", r"0 valid, 0 skipped"),
                       ("json_path: bad.jsonl", r"0 valid, 1 skipped")]:
        mix.write_text(f"datasets:\n  - json_path: a.jsonl\n  - {entry}\n")
        with pytest.raises(ValueError, match=rf"mix\.yaml: datasets\[1\]: .* gave 0 records \(.*{why}"):
            read_mixture(mix, base_dir=tmp_path, on_error="skip")


def _script_args(dataset, data_root=None, on_error="raise"):
    return SimpleNamespace(dataset_name=str(dataset), data_root=data_root, data_on_error=on_error)


def test_training_data_that_gives_nothing_is_refused(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match=r"empty\.jsonl: no training record \(0 skipped"):
        load_training_records(_script_args(tmp_path / "empty.jsonl"))
    write(tmp_path / "bad.jsonl", [rec(5, solution="<answer>Z</answer>")])
    with pytest.raises(ValueError, match=r"bad\.jsonl: no training record \(1 skipped"):
        load_training_records(_script_args(tmp_path / "bad.jsonl", on_error="skip"))


def test_data_root_with_a_mixture_is_refused(tmp_path, monkeypatch):
    write(tmp_path / "a.jsonl", [rec(1)])
    mix = tmp_path / "mix.yaml"
    mix.write_text("datasets:\n  - json_path: a.jsonl\n")
    monkeypatch.chdir(tmp_path)
    assert len(load_training_records(_script_args(mix))) == 1
    with pytest.raises(ValueError, match=r"--data_root '/media' applies to a single JSON/JSONL file"):
        load_training_records(_script_args(mix, data_root="/media"))
