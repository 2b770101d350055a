"""Video-R1 record loading (validation, clear errors, skip mode) and YAML mixtures."""
import json
import logging
import os
import random
from pathlib import Path

import pytest

from r1v.data import expand_env, load_mixture, load_records, read_mixture, read_records, sample_records

REPO = Path(__file__).resolve().parents[1]


def rec(pid, **over):
    base = {"problem_id": pid, "problem": f"question {pid}?", "data_type": "video",
            "problem_type": "multiple choice", "options": ["A. yes", "B. no"],
            "solution": "<answer>A</answer>", "path": f"./videos/v{pid}.mp4", "data_source": "test"}
    base.update(over)
    return base


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def touch_media(root: Path, pids):
    (root / "videos").mkdir(parents=True, exist_ok=True)
    for pid in pids:
        (root / "videos" / f"v{pid}.mp4").write_bytes(b"\0")


def test_jsonl_and_json_resolve_paths(tmp_path):
    touch_media(tmp_path, [1, 2])
    rows = [rec(1), rec(2, problem_type="numerical", solution="<answer>3</answer>"),
            rec(3, problem_type="OCR", options=None, path="./videos/v1.mp4")]
    del rows[1]["options"]
    got = load_records(write_jsonl(tmp_path / "a.jsonl", rows))
    assert [r["problem_id"] for r in got] == [1, 2, 3]
    assert got[0]["path"] == str(tmp_path / "videos" / "v1.mp4") and os.path.isabs(got[0]["path"])
    assert got[0]["rel_path"] == "./videos/v1.mp4"
    assert got[1]["options"] == [] and got[2]["options"] == []
    assert rows[0]["path"] == "./videos/v1.mp4"  # input dicts are not modified
    (tmp_path / "b.json").write_text(json.dumps([rec(1), rec(2)], indent=2))
    assert [r["path"] for r in load_records(tmp_path / "b.json")] == [r["path"] for r in got[:2]]


def test_data_root_and_absolute_paths(tmp_path):
    media = tmp_path / "media"
    touch_media(media, [1])
    absolute = str(media / "videos" / "v1.mp4")
    jsonl = write_jsonl(tmp_path / "ann" / "a.jsonl", [rec(1), rec(2, path=absolute)])
    got = load_records(jsonl, data_root=media)
    assert got[0]["path"] == absolute and got[1]["path"] == absolute
    with pytest.raises(FileNotFoundError, match=r"a\.jsonl:1 \(problem_id=1\)"):
        load_records(jsonl)  # default root is the file's folder, where no media lies


@pytest.mark.parametrize("row, match", [
    ('{"problem_id": 7, "problem": ', r"bad\.jsonl:2 \(problem_id=None\): invalid JSON"),
    (rec(7, problem_type="essay"), r"bad\.jsonl:2 \(problem_id=7\): problem_type: must be one of"),
    ({k: v for k, v in rec(7).items() if k != "solution"}, r"bad\.jsonl:2 \(problem_id=7\): missing field.*solution"),
    (rec(7, data_type="audio"), r"problem_id=7\): data_type"),
    (rec(7, options=[]), r"problem_id=7\): options: a multiple-choice record needs"),
    (rec(7, options="A. yes"), r"problem_id=7\): options: expected a list of strings"),
    (rec(7, problem_id=True), r"problem_id=True\): problem_id: expected int or str"),
    (rec(7, evidence={"time_span": [2.0, 1.0]}), r"problem_id=7\): evidence.time_span"),
    (rec(7, evidence={"time_span": [0, 1], "region": [0.5, 0, 0.4, 1]}), r"evidence.region"),
    (rec(7, evidence={"error_type": "logic"}), r"evidence.error_type"),
    (rec(7, evidence={"markers": "look"}), r"evidence.markers"),
    ("[1, 2]", r"bad\.jsonl:2 \(problem_id=None\): expected a JSON object"),
])
def test_bad_records_name_file_line_and_id(tmp_path, row, match):
    touch_media(tmp_path, [1, 7])
    jsonl = write_jsonl(tmp_path / "bad.jsonl", [rec(1), row])
    with pytest.raises(ValueError, match=match):
        load_records(jsonl)


def test_missing_media_and_files(tmp_path):
    touch_media(tmp_path, [1])
    jsonl = write_jsonl(tmp_path / "m.jsonl", [rec(1), rec("clip-9")])
    with pytest.raises(FileNotFoundError, match=r"m\.jsonl:2 \(problem_id='clip-9'\): media file not found"):
        load_records(jsonl)
    assert len(load_records(jsonl, check_media=False)) == 2
    with pytest.raises(FileNotFoundError, match="data file not found"):
        load_records(tmp_path / "nope.jsonl")
    (tmp_path / "broken.json").write_text('[{"problem_id": 1,]')
    with pytest.raises(ValueError, match=r"broken\.json:1:\d+: invalid JSON"):
        load_records(tmp_path / "broken.json")
    (tmp_path / "item.json").write_text(json.dumps([rec(1), rec(2, problem_type="x")]))
    with pytest.raises(ValueError, match=r"item\.json\[item 1\] \(problem_id=2\)"):
        load_records(tmp_path / "item.json")


def test_skip_mode_counts_and_logs(tmp_path, caplog):
    touch_media(tmp_path, [1, 3])
    rows = [rec(1), "{not json", rec(2), rec(3, problem_type="essay"), rec(3)]
    jsonl = write_jsonl(tmp_path / "s.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="r1v.data"):
        result = read_records(jsonl, on_error="skip")
    assert [r["problem_id"] for r in result.records] == [1, 3]
    assert result.skipped == 3 and len(result.errors) == 3
    assert "s.jsonl:3 (problem_id=2)" in result.errors[1]
    assert "skipped 3 bad record(s)" in caplog.text
    assert len(load_records(jsonl, on_error="skip")) == 2
    with pytest.raises(ValueError, match="on_error"):
        load_records(jsonl, on_error="ignore")


def test_sampling_strategies():
    rows = list(range(10))
    rng = lambda: random.Random("s")  # noqa: E731
    assert sample_records(rows, "all", rng()) == rows
    assert sample_records(rows, "first:3", rng()) == [0, 1, 2]
    assert sample_records(rows, "end:2", rng()) == [8, 9]
    assert sample_records(rows, "first:25%", rng()) == [0, 1]
    assert sample_records(rows, "end:1%", rng()) == [9]  # at least one record
    picked = sample_records(rows, "random:4", rng())
    assert len(set(picked)) == 4 and picked == sorted(picked)
    assert picked == sample_records(rows, "random:4", rng())
    assert sample_records(rows, "random:50%", rng()) != sample_records(rows, "random:50%", random.Random("t"))
    assert sample_records(rows, "first:99", rng()) == rows
    for bad in ("some:3", "first:", "random:1.5", "first:0%", "first:150%"):
        with pytest.raises(ValueError, match="sampling_strategy|percentage|count"):
            sample_records(rows, bad, rng())


def test_expand_env(monkeypatch):
    monkeypatch.setenv("FFR_T_SET", "/x/y")
    monkeypatch.setenv("FFR_T_EMPTY", "")
    monkeypatch.delenv("FFR_T_UNSET", raising=False)
    assert expand_env("${FFR_T_SET:-d}/a.json") == "/x/y/a.json"
    assert expand_env("${FFR_T_UNSET:-data/d}/a.json") == "data/d/a.json"
    assert expand_env("${FFR_T_EMPTY:-dflt}") == "dflt"
    assert expand_env("${FFR_T_SET}") == "/x/y"
    with pytest.raises(ValueError, match="where.*FFR_T_UNSET is not set"):
        expand_env("${FFR_T_UNSET}/a", "where")


def test_mixture_loading(tmp_path, monkeypatch):
    touch_media(tmp_path / "a", range(10))
    write_jsonl(tmp_path / "a" / "ann.jsonl", [rec(i) for i in range(10)])
    touch_media(tmp_path / "media_b", range(100, 104))
    write_jsonl(tmp_path / "b" / "b.jsonl", [rec(i) for i in range(100, 104)] + [rec(999, problem_type="bad")])
    touch_media(tmp_path / "c", range(200, 203))
    write_jsonl(tmp_path / "c" / "c.jsonl", [rec(i) for i in range(200, 203)])
    monkeypatch.setenv("FFR_T_A", str(tmp_path / "a"))
    monkeypatch.delenv("FFR_T_B", raising=False)
    mix = tmp_path / "mix.yaml"
    mix.write_text("datasets:\n"
                   "  - json_path: ${FFR_T_A:-nowhere}/ann.jsonl\n    sampling_strategy: random:3\n"
                   "  - json_path: ${FFR_T_B:-b}/b.jsonl\n    data_root: media_b\n    sampling_strategy: first:50%\n"
                   "  - json_path: c/c.jsonl\n    sampling_strategy: end:1\n")
    result = read_mixture(mix, base_dir=tmp_path, on_error="skip", seed=1)
    ids = [r["problem_id"] for r in result.records]
    assert len(ids) == 3 + 2 + 1 and ids[3:] == [100, 101, 202]
    assert result.skipped == 1
    assert ids == [r["problem_id"] for r in load_mixture(mix, base_dir=tmp_path, on_error="skip", seed=1)]
    other = [r["problem_id"] for r in load_mixture(mix, base_dir=tmp_path, on_error="skip", seed=2)]
    assert other[3:] == ids[3:] and other[:3] != ids[:3]  # only the random entry depends on the seed
    with pytest.raises(ValueError, match="problem_id=999"):
        load_mixture(mix, base_dir=tmp_path)
    mix.write_text("datasets:\n  - json_path: x.jsonl\n    sampling_strategey: all\n")
    with pytest.raises(ValueError, match=r"datasets\[0\] has unknown key.*sampling_strategey"):
        load_mixture(mix)
    mix.write_text("datasets: []\n")
    with pytest.raises(ValueError, match="at least one entry"):
        load_mixture(mix)


def test_shipped_mixtures(tmp_path, monkeypatch):
    sizes = {"VIDEO_R1_DATA": ("Video-R1-260k.json", 2100), "VIDEO_THINKER_DATA": ("video_thinker_rl.json", 1050),
             "VIDEO_HOLMES_DATA": ("video_holmes_train.json", 1000)}
    for var, (name, n) in sizes.items():
        folder = tmp_path / var
        folder.mkdir()
        (folder / name).write_text(json.dumps([rec(f"{var}-{i}") for i in range(n)]))
        monkeypatch.setenv(var, str(folder))
    records = load_mixture(REPO / "data_configs" / "video_r1_4k_mix.yaml", check_media=False)
    assert len(records) == 4000
    assert len({r["problem_id"] for r in records}) == 4000
    assert records[0]["path"].startswith(str(tmp_path / "VIDEO_R1_DATA"))

    from r1v.toy.synthetic import generate_dataset
    generate_dataset(tmp_path / "synth", n_items=3, seed=0)
    monkeypatch.setenv("SYNTH_DATA", str(tmp_path / "synth"))
    assert len(load_mixture(REPO / "data_configs" / "synthetic.yaml")) == 3
