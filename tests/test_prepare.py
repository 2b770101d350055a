"""r1v.prepare: release converters, overlap check, mix manifest round-trip, missing media reports."""
import json
import shutil
from pathlib import Path

import pytest

from r1v.data import read_records
from r1v.prepare.__main__ import main
from r1v.prepare.common import MissingMediaError, report_path
from r1v.prepare.mix import draw_mix, read_manifest, rebuild
from r1v.prepare.overlap import build_index, filter_overlap
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
    assert convert("video-holmes", src, out, force=True).n_written == 0


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
    index = build_index([_eval_set(tmp_path)])
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
    report = draw_mix(config, out, manifest, seed=7, base_dir=tmp_path, eval_specs=[_eval_set(tmp_path)])
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
             eval_specs=[f"videoholmes={tmp_path / 'eval' / 'test_Video-Holmes.json'}"])
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
