"""r1v.prepare: release converters, overlap check, mix manifest round-trip, missing media reports."""
import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eval.registry import load_eval_set
from r1v.data import read_records
from r1v.prepare.__main__ import main
from r1v.prepare.common import MissingMediaError, report_path
from r1v.prepare.mix import draw_mix, read_manifest, rebuild
from r1v.prepare.overlap import EvalItem, build_index, filter_overlap
from r1v.prepare.sources import convert

FIXTURES = Path(__file__).parent / "fixtures" / "prepare"
MEDIA = {
    "video_r1": ["LLaVA-Video-178K/clip_0001.mp4", "CLEVRER/video_10002.mp4", "Math/geo_0003.png",
                 "NeXT-QA/4001.mp4", "STAR/Interaction_T1_5.mp4", "PerceptionTest/video_6.mp4"],
    "video_thinker": ["YouCook2/cook_101.mp4", "STAR/star_102.mp4", "ActivityNet/v_abc123.mp4"],
    "video_holmes": ["videos/aB3dE5fG7hI.mp4", "videos/Zx9Yw8Vu7Ts.mp4"],
}
RELEASE_FILE = {"video_r1": "Video-R1-260k.json", "video_thinker": "video_thinker_rl.json",
                "video_holmes": "train_Video-Holmes.json"}


def stage(tmp_path, release, skip=()):
    """Copy a release's fixture annotation to tmp and create its media (content = its own path)."""
    root = tmp_path / release
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / release / RELEASE_FILE[release], root)
    for rel in MEDIA[release]:
        if rel not in skip:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(f"{release}/{rel}".encode())
    return root / RELEASE_FILE[release]


def rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_video_r1_converter_keeps_records_and_rewrites_ids_and_paths(tmp_path):
    src = stage(tmp_path, "video_r1")
    out = tmp_path / "out" / "video_r1.jsonl"
    report = convert("video-r1", src, out)
    got = rows(out)
    assert report.n_read == report.n_written == 6 and not report.missing_media
    assert [r["problem_id"] for r in got] == [f"video_r1:{i}" for i in range(1, 7)]
    assert got[0]["original_id"] == "1" and got[0]["data_source"] == "LLaVA-Video-178K"
    assert got[0]["path"] == "../video_r1/LLaVA-Video-178K/clip_0001.mp4"
    assert got[3]["options"] == [] and got[2]["data_type"] == "image"
    loaded = read_records(out)  # the output is valid training data, media found from its folder
    assert len(loaded.records) == 6 and loaded.records[1]["solution"] == "<answer>3</answer>"


def test_video_thinker_converter_reads_both_shapes(tmp_path):
    out = tmp_path / "vt.jsonl"
    convert("video-thinker", stage(tmp_path, "video_thinker"), out)
    got = {r["problem_id"]: r for r in rows(out)}
    assert set(got) == {"video_thinker:101", "video_thinker:102", "video_thinker:activitynet_7"}
    assert got["video_thinker:101"]["process"].startswith("<time>00:12-00:20</time>")
    qa = got["video_thinker:activitynet_7"]
    assert qa["options"] == ["A. tennis", "B. badminton", "C. squash", "D. table tennis"]
    assert qa["solution"] == "<answer>B</answer>" and qa["problem_type"] == "multiple choice"
    assert qa["data_source"] == "ActivityNet" and qa["path"] == "video_thinker/ActivityNet/v_abc123.mp4"


def test_video_holmes_converter_builds_six_way_multiple_choice(tmp_path):
    out = tmp_path / "vh.jsonl"
    convert("video-holmes", stage(tmp_path, "video_holmes"), out)
    got = rows(out)
    assert [r["original_id"] for r in got] == ["aB3dE5fG7hI_1", "aB3dE5fG7hI_2", "Zx9Yw8Vu7Ts_1"]
    first = got[0]
    assert first["problem_id"] == "video_holmes:aB3dE5fG7hI_1" and first["solution"] == "<answer>F</answer>"
    assert first["options"][0] == "A. He hears a knock" and len(first["options"]) == 6
    assert first["path"] == "video_holmes/videos/aB3dE5fG7hI.mp4" and first["question_type"] == "TCI"


def test_bad_release_item_names_file_and_item(tmp_path):
    src = tmp_path / "bad.json"
    src.write_text(json.dumps([{"video ID": "x", "Question ID": 1, "Question": "q",
                                "Options": {"A": "a", "B": "b"}, "Answer": "Z"}]))
    with pytest.raises(ValueError, match=r"bad.json\[item 0\].*Answer 'Z'"):
        convert("video-holmes", src, tmp_path / "o.jsonl")


def test_missing_media_is_an_error_by_default_and_listed_when_skipped(tmp_path, capsys):
    src = stage(tmp_path, "video_holmes", skip={"videos/Zx9Yw8Vu7Ts.mp4"})
    out = tmp_path / "vh.jsonl"
    with pytest.raises(MissingMediaError, match=r"1 missing media.*Zx9Yw8Vu7Ts_1.*Zx9Yw8Vu7Ts.mp4"):
        convert("video-holmes", src, out)
    assert not out.exists()  # nothing half-written
    assert main(["video-holmes", "--src", str(src), "--out", str(out)]) == 2
    assert "--on-missing skip" in capsys.readouterr().err
    report = convert("video-holmes", src, out, on_missing="skip")
    assert report.n_written == 2 and [m["id"] for m in report.missing_media] == ["Zx9Yw8Vu7Ts_1"]
    saved = json.loads(report_path(out).read_text())
    assert saved["missing_media"][0]["path"].endswith("videos/Zx9Yw8Vu7Ts.mp4")
    assert len(rows(out)) == 2


def test_finished_outputs_are_skipped_unless_forced(tmp_path):
    src = stage(tmp_path, "video_holmes")
    out = tmp_path / "vh.jsonl"
    convert("video-holmes", src, out)
    src.write_text("[]")  # a changed source is not re-read once the output is finished
    assert convert("video-holmes", src, out).notes["skipped"] == "done"
    assert len(rows(out)) == 3
    with pytest.raises(ValueError, match="the release holds no items"):  # an empty release writes nothing
        convert("video-holmes", src, out, force=True)
    assert len(rows(out)) == 3


def _eval_set(tmp_path):
    """The Video-Holmes test fixture with one video whose bytes equal a training video's."""
    root = tmp_path / "eval"
    root.mkdir()
    shutil.copy(FIXTURES / "video_holmes" / "test_Video-Holmes.json", root)
    (root / "videos").mkdir()
    (root / "videos" / "Qq1Ww2Ee3Rr.mp4").write_bytes(b"video_r1/PerceptionTest/video_6.mp4")
    return f"videoholmes={root / 'test_Video-Holmes.json'}"


def test_overlap_removes_by_video_question_and_content(tmp_path):
    convert("video-holmes", stage(tmp_path, "video_holmes"), tmp_path / "vh.jsonl")
    convert("video-r1", stage(tmp_path, "video_r1"), tmp_path / "vr.jsonl")
    index = build_index([_eval_set(tmp_path)], load_eval_set)
    assert index.n_items == 2 and "Zx9Yw8Vu7Ts" in index.stems
    records = read_records(tmp_path / "vh.jsonl").records + read_records(tmp_path / "vr.jsonl").records
    kept, removed = filter_overlap(records, index, source="train")
    why = {r["problem_id"]: (r["reason"], r["match"]) for r in removed}
    assert why == {"video_holmes:Zx9Yw8Vu7Ts_1": ("video", "videoholmes:Zx9Yw8Vu7Ts_3"),
                   "video_r1:5": ("question", "videoholmes:Qq1Ww2Ee3Rr_1"),
                   "video_r1:6": ("content", "videoholmes:Qq1Ww2Ee3Rr_1")}
    assert len(kept) == len(records) - 3
    _, removed = filter_overlap(records, index, content_hash=False, min_question_words=20)
    assert [r["reason"] for r in removed] == ["video"]
    generic = tmp_path / "eval_any.jsonl"  # a bare PATH: fields found by name
    generic.write_text(json.dumps({"problem_id": 9, "problem": "unrelated", "path": "./clips/clip_0001.mp4"}) + "\n")
    _, removed = filter_overlap(records, build_index([str(generic)]))
    assert [(r["problem_id"], r["match"]) for r in removed] == [("video_r1:1", "eval_any.jsonl:9")]


def test_overlap_matches_plain_items_and_leaves_benchmark_formats_to_eval(tmp_path):
    """r1v.prepare.overlap reads bare paths itself; a NAME=PATH spec needs eval's loader."""
    spec = _eval_set(tmp_path)
    with pytest.raises(ValueError, match="benchmark 'videoholmes' needs the benchmark loader"):
        build_index([spec])
    index = build_index([spec], lambda s: ("mine", [EvalItem("mine:1", "/x/Zx9Yw8Vu7Ts.mp4", "What happens?")]))
    assert index.sets == ["mine"] and index.stems == {"Zx9Yw8Vu7Ts": "mine:1"}
    assert index.questions == {"what happens": "mine:1"}


def test_core_packages_never_import_eval():
    """Dependencies point down: importing r1v.prepare (every module but the CLI, where the
    layers meet) or ffr loads no module of the evaluation package."""
    code = ("import sys, r1v.prepare.overlap, r1v.prepare.mix, r1v.prepare.sources, r1v.prepare.common, ffr.mine, "
            "ffr.audit, r1v.teacher_traces\n"
            "print(sorted(m for m in sys.modules if m == 'eval' or m.startswith('eval.')))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"
    # And no module of src/r1v or src/ffr but that CLI names eval in an import, even inside a function.
    src = Path(__file__).parents[1] / "src"
    found = []
    for path in sorted(src.rglob("*.py")):
        if path == src / "r1v" / "prepare" / "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            found += [f"{path.relative_to(src)}: {n}" for n in names if n == "eval" or n.startswith("eval.")]
    assert found == []


def test_overlap_cli_writes_kept_records_and_report(tmp_path):
    convert("video-r1", stage(tmp_path, "video_r1"), tmp_path / "vr.jsonl")
    out = tmp_path / "clean" / "vr.jsonl"
    assert main(["overlap", "--data", str(tmp_path / "vr.jsonl"), "--eval", _eval_set(tmp_path),
                 "--out", str(out)]) == 0
    assert [r["problem_id"] for r in rows(out)] == [f"video_r1:{i}" for i in range(1, 5)]
    assert len(read_records(out).records) == 4  # paths rewritten relative to the new folder
    assert len(json.loads(report_path(out).read_text())["removed"]) == 2


def _mix_config(tmp_path):
    for release, sub in (("video_r1", "video-r1"), ("video_thinker", "video-thinker"),
                         ("video_holmes", "video-holmes")):
        convert(sub, stage(tmp_path, release), tmp_path / "conv" / f"{release}.jsonl")
    config = tmp_path / "mix.yaml"
    config.write_text("datasets:\n" + "".join(
        f"  - name: {name}\n    json_path: conv/{name}.jsonl\n    sampling_strategy: random:{n}\n"
        for name, n in (("video_r1", 3), ("video_thinker", 2), ("video_holmes", 2))))
    return config


def test_mix_manifest_round_trip_rebuilds_the_same_records(tmp_path):
    config = _mix_config(tmp_path)
    out, manifest = tmp_path / "mix" / "mix.jsonl", tmp_path / "mix" / "mix.manifest.json"
    report = draw_mix(config, out, manifest, seed=7, base_dir=tmp_path, eval_specs=[_eval_set(tmp_path)],
                      load_eval_set=load_eval_set)
    drawn = rows(out)
    assert len(drawn) == 7 and report.n_written == 7
    data = read_manifest(manifest)
    assert {s: v["n_drawn"] for s, v in data["sources"].items()} == {"video_r1": 3, "video_thinker": 2,
                                                                    "video_holmes": 2}
    assert data["sources"]["video_holmes"]["n_available"] == 2  # the overlapping question was removed
    item = data["items"][0]
    assert set(item) == {"source", "original_id", "problem_id", "path", "seed"} and item["seed"] == 7
    removed = {r["problem_id"] for r in data["overlap_removed"]}
    assert removed == {"video_holmes:Zx9Yw8Vu7Ts_1", "video_r1:5", "video_r1:6"}
    assert not removed & {r["problem_id"] for r in drawn}
    rebuilt = tmp_path / "mix" / "rebuilt.jsonl"
    rebuild(manifest, rebuilt, base_dir=tmp_path)
    assert rows(rebuilt) == drawn
    assert len(read_records(rebuilt).records) == 7
    again = tmp_path / "again"
    draw_mix(config, again / "mix.jsonl", again / "m.json", seed=7, base_dir=tmp_path,
             eval_specs=[f"videoholmes={tmp_path / 'eval' / 'test_Video-Holmes.json'}"], load_eval_set=load_eval_set)
    assert rows(again / "mix.jsonl") == drawn  # same seed, same draw (same folder depth, same paths)


def test_rebuild_names_items_the_source_no_longer_has(tmp_path):
    config = _mix_config(tmp_path)
    out, manifest = tmp_path / "mix.jsonl", tmp_path / "m.json"
    draw_mix(config, out, manifest, seed=1, base_dir=tmp_path)
    data = read_manifest(manifest)
    gone = next(i for i in data["items"] if i["source"] == "video_holmes")
    conv = tmp_path / "conv" / "video_holmes.jsonl"
    conv.write_text("".join(line + "\n" for line in conv.read_text().splitlines()
                            if json.loads(line)["original_id"] != gone["original_id"]))
    with pytest.raises(ValueError, match=f"video_holmes:{gone['original_id']}: not in the source file"):
        rebuild(manifest, tmp_path / "r.jsonl", base_dir=tmp_path)


def test_mix_reports_missing_media_across_sources(tmp_path):
    config = _mix_config(tmp_path)
    (tmp_path / "video_r1" / "Math" / "geo_0003.png").unlink()
    with pytest.raises(MissingMediaError, match="video_r1:3"):
        draw_mix(config, tmp_path / "m.jsonl", tmp_path / "m.json", base_dir=tmp_path)
    draw_mix(config, tmp_path / "m.jsonl", tmp_path / "m.json", base_dir=tmp_path, on_missing="skip")
    data = read_manifest(tmp_path / "m.json")
    assert [m["id"] for m in data["missing_media"]] == ["video_r1:3"]
    assert data["sources"]["video_r1"]["n_available"] == 5


def test_cli_rejects_bad_input_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["video-holmes", "--src", "x.json"])  # --out missing: argparse names it
    assert "--out" in capsys.readouterr().err
    assert main(["rebuild", "--manifest", str(FIXTURES / "video_r1" / "Video-R1-260k.json"),
                 "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "not a mix manifest" in capsys.readouterr().err


def test_mix_and_rebuild_cli_with_moved_source(tmp_path, capsys):
    config = _mix_config(tmp_path)
    out, manifest = tmp_path / "m" / "mix.jsonl", tmp_path / "m" / "mix.manifest.json"
    assert main(["mix", "--config", str(config), "--base-dir", str(tmp_path), "--seed", "3",
                 "--out", str(out), "--manifest", str(manifest)]) == 0
    assert "mix: read 12, wrote 7" in capsys.readouterr().out
    moved = tmp_path / "elsewhere" / "vh.jsonl"  # same records, now found through --source
    moved.parent.mkdir()
    moved.write_text((tmp_path / "conv" / "video_holmes.jsonl").read_text())
    rebuild(manifest, tmp_path / "m" / "moved.jsonl", {"video_holmes": str(moved)}, base_dir=tmp_path)
    assert rows(tmp_path / "m" / "moved.jsonl") == rows(out)
    assert main(["rebuild", "--manifest", str(manifest), "--out", str(tmp_path / "m" / "r.jsonl"),
                 "--source", "video_holmes", "--base-dir", str(tmp_path)]) == 2
    assert "expected NAME=PATH" in capsys.readouterr().err
    assert main(["rebuild", "--manifest", str(manifest), "--out", str(tmp_path / "m" / "r.jsonl"),
                 "--config", str(config), "--base-dir", str(tmp_path)]) == 0
    assert rows(tmp_path / "m" / "r.jsonl") == rows(out)


def _holmes(tmp_path, items, videos=("v1",)):
    """A Video-Holmes-shaped release with ``items`` and the given videos under videos/."""
    root = tmp_path / "holmes"
    (root / "videos").mkdir(parents=True, exist_ok=True)
    for v in videos:
        (root / "videos" / f"{v}.mp4").write_bytes(v.encode())
    src = root / "train.json"
    src.write_text(json.dumps(items))
    return src


def _hq(qid, question="What happens?", options=None, video="v1"):
    return {"video ID": video, "Question ID": qid, "Question": question,
            "Options": options or {"A": "a", "B": "b"}, "Answer": "A"}


@pytest.mark.parametrize("release, item, match", [
    ("video-holmes", _hq(1, question=None), "Question must be a non-empty string, got None"),
    ("video-holmes", _hq(1, question={"text": "q"}), "Question must be a non-empty string, got {'text'"),
    ("video-holmes", _hq(1, options={"A": "a", "B": None}), r"Options\['B'\] must be a non-empty string"),
    ("video-holmes", {**_hq(1), "video ID": None}, "video ID must be a non-empty string or an integer"),
    ("video-r1", {"problem_id": None, "problem": "q", "data_type": "video", "problem_type": "free-form",
                  "options": [], "solution": "<answer>x</answer>", "path": "videos/v1.mp4"},
     "problem_id must be a non-empty string or an integer, got None"),
    ("video-r1", {"problem_id": 1, "problem": None, "data_type": "video", "problem_type": "free-form",
                  "options": [], "solution": "<answer>x</answer>", "path": "videos/v1.mp4"},
     "problem must be a non-empty string, got None"),
    ("video-thinker", {"id": None, "video": "videos/v1.mp4", "question": "q", "answer": "a"},
     "id must be a non-empty string or an integer, got None"),
    ("video-thinker", {"id": 3, "video": "videos/v1.mp4", "question": "q", "options": ["x", None], "answer": "A"},
     r"options\[1\] must be a non-empty string, got None"),
])
def test_converters_refuse_null_and_non_text_fields(tmp_path, release, item, match):
    src = _holmes(tmp_path, [item])
    with pytest.raises(ValueError, match=r"train.json\[item 0\]: " + match):
        convert(release, src, tmp_path / "o.jsonl", video_dir="videos")
    assert not (tmp_path / "o.jsonl").exists()


def test_repeated_ids_are_an_error_unless_renamed(tmp_path, capsys):
    src = _holmes(tmp_path, [_hq(1), _hq(1), _hq(2), _hq(1)])
    out = tmp_path / "o.jsonl"
    assert main(["video-holmes", "--src", str(src), "--out", str(out)]) == 2
    assert "1 id(s) repeated: 'v1_1' at items [0, 1, 3]" in capsys.readouterr().err and not out.exists()
    report = convert("video-holmes", src, out, duplicate_ids="rename")
    assert [r["original_id"] for r in rows(out)] == ["v1_1#1", "v1_1#2", "v1_2", "v1_1#3"]
    assert report.notes["renamed_duplicate_ids"] == ["v1_1"]


def test_media_outside_the_release_folder_are_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.mp4").write_bytes(b"x")
    src = _holmes(tmp_path, [_hq(1), _hq(2, video="link"), _hq(3, video="../../elsewhere/secret")])
    (src.parent / "videos" / "link.mp4").symlink_to(outside / "secret.mp4")
    with pytest.raises(ValueError, match=r"2 media path\(s\) resolve outside the release folder.*"
                                         r"link_2: videos/link.mp4 -> .*elsewhere/secret.mp4; "
                                         r".*secret_3: videos/../../elsewhere"):
        convert("video-holmes", src, tmp_path / "o.jsonl")
    assert not (tmp_path / "o.jsonl").exists()


def test_no_record_to_write_is_an_error(tmp_path, capsys):
    src = _holmes(tmp_path, [_hq(1, video="gone")])
    assert main(["video-holmes", "--src", str(src), "--out", str(tmp_path / "o.jsonl"), "--on-missing", "skip"]) == 2
    assert "no record to write (1 of 1 items have missing media)" in capsys.readouterr().err
    src.write_text("[]")
    assert main(["video-holmes", "--src", str(src), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "the release holds no items" in capsys.readouterr().err


def test_a_non_utf8_file_is_named(tmp_path, capsys):
    src = tmp_path / "bad.jsonl"
    src.write_bytes(b'{"problem_id": 1}\n{"problem": "caf\xe9"}\n')
    assert main(["video-r1", "--src", str(src), "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert f"error: {src}:2: not UTF-8 (byte 0xe9" in err and len(err.strip().splitlines()) == 1
    for deep in (b"[" * 100_000 + b"]" * 100_000, b'{"a": 1}\n' + b"[" * 100_000 + b"\n"):  # JSON list, JSONL
        src.write_bytes(deep)
        assert main(["video-r1", "--src", str(src), "--out", str(tmp_path / "o.jsonl")]) == 2
        err = capsys.readouterr().err
        assert f"error: {src}" in err and "nested too deeply" in err and len(err.strip().splitlines()) == 1


def test_mix_rerun_with_other_settings_is_refused(tmp_path, capsys):
    config = _mix_config(tmp_path)
    out, manifest = tmp_path / "m" / "mix.jsonl", tmp_path / "m" / "mix.manifest.json"
    base = ["mix", "--config", str(config), "--base-dir", str(tmp_path), "--out", str(out), "--manifest", str(manifest)]
    assert main([*base, "--seed", "3"]) == 0
    drawn = out.read_bytes()
    capsys.readouterr()
    assert main([*base, "--seed", "3"]) == 0 and "already done" in capsys.readouterr().out  # same settings
    assert main([*base, "--seed", "4"]) == 2
    assert "other settings (seed 3 -> 4)" in capsys.readouterr().err and out.read_bytes() == drawn
    other = tmp_path / "other.yaml"
    other.write_text(config.read_text().replace("random:3", "random:2"))
    assert main([*base, "--seed", "3"][:2] + [str(other)] + base[3:] + ["--seed", "3"]) == 2
    assert "config_sha256" in capsys.readouterr().err and out.read_bytes() == drawn
    assert main([*base, "--seed", "4", "--force"]) == 0 and read_manifest(manifest)["seed"] == 4


def _tamper(manifest, change):
    data = json.loads(manifest.read_text())
    change(data)
    manifest.write_text(json.dumps(data))


@pytest.mark.parametrize("change, match", [
    (lambda d: d.pop("items"), "'items' must be a list, got NoneType"),
    (lambda d: d["items"][1].pop("source"), r"items\[1\] has no \['source'\]"),
    (lambda d: d.update(sources=list(d["sources"].values())), "'sources' must be a non-empty mapping"),
    (lambda d: d["items"].extend(d["items"]), r"items\[7\] repeats items\[0\]"),
    (lambda d: d["items"][0].update(source="nowhere"), r"items\[0\]: source 'nowhere' is not one of"),
])
def test_rebuild_refuses_a_tampered_manifest(tmp_path, capsys, change, match):
    config = _mix_config(tmp_path)
    out, manifest = tmp_path / "mix.jsonl", tmp_path / "m.json"
    draw_mix(config, out, manifest, seed=1, base_dir=tmp_path)
    _tamper(manifest, change)
    capsys.readouterr()
    rebuilt = tmp_path / "r.jsonl"
    assert main(["rebuild", "--manifest", str(manifest), "--out", str(rebuilt), "--base-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {manifest}: ") and len(err.strip().splitlines()) == 1
    assert re.search(match, err) and not rebuilt.exists()
