"""Patch inspector page (`python -m ffr.inspect`): built from a small run over real synthetic videos,
checked as written and as a real browser (headless Chromium) renders it: cards, region boxes at the
right coordinates, filters and paging from the URL hash, and a screenshot."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ffr.inspect.__main__ import main
from ffr.patch import EVIDENCE_HEADER
from r1v.prompts import build_question_text
from r1v.vision import VisionConfig, load_video

CFG = {"GRPOScriptArguments": {"fps": 2.0, "min_frames": 4, "max_frames": 4, "video_min_pixels": 3136,
                               "video_max_pixels": 3136}, "FFRGRPOConfig": {"ffr_visual_context": True}}


def _records(synthetic_dir, n):
    rows = [json.loads(x) for x in (synthetic_dir / "train.jsonl").read_text().splitlines()]
    return [r for r in rows if r["data_type"] == "video"][:n]


def _line(rec, root, step, **kw):
    video = str(root / rec["path"])
    ts = load_video(video, VisionConfig(min_frames=4, max_frames=4, video_min_pixels=3136,
                                        video_max_pixels=3136)).timestamps
    base = {"step": step, "sample_id": f"{rec['problem_id']}#s{step}", "problem_id": rec["problem_id"],
            "question": build_question_text(rec), "options": rec["options"], "problem_type": rec["problem_type"],
            "gold_answer": "A", "video_path": video, "timestamps": ts, "student_response": "<answer>B</answer>",
            "student_answer": "B", "status": "ok", "error_type": None, "detail": None, "patch": None,
            "patched_answer": None, "first_reward": 0.0, "patched_reward": None, "chosen_patched": False,
            "outcome": "no_patch", "teacher_model": "annotation", "prompt_version": "v1",
            "patch_error_types": [], "leak_source": None}
    return {**base, **kw}


def _patch(types, key, regions, guidance):
    return {"error_types": types, "key_frames": key, "temporal_markers": [], "spatial_regions": regions,
            "guidance": guidance}


@pytest.fixture(scope="module")
def run_dir(synthetic_dir, tmp_path_factory):
    """A run folder: patch_log/rank0.jsonl (7 requests, every outcome class), metrics.jsonl, run_config.json."""
    out = tmp_path_factory.mktemp("run")
    r = _records(synthetic_dir, 5)
    lines = [
        _line(r[0], synthetic_dir, 1, outcome="fixed", patched_answer="A", patched_reward=1.0, chosen_patched=True,
              patch=_patch(["spatial"], {"start": 1, "end": 2},
                           [{"frame": 1, "box": [0.1, 0.2, 0.5, 0.6], "coords": "relative"}],
                           "Look at the shape in the upper left.")),
        _line(r[1], synthetic_dir, 2, outcome="not_fixed", patched_answer="C", patched_reward=0.0,
              patch=_patch(["temporal"], {"start": 0, "end": 1},
                           [{"frame": None, "box": [100, 250, 400, 750], "coords": "norm1000"}],
                           "Watch the first second closely.")),
        _line(r[2], synthetic_dir, 2, status="error", error_type="backend", detail="backend: boom"),
        _line(r[3], synthetic_dir, 3, status="leak", leak_source="gate", patch_error_types=["temporal"],
              detail="guidance: names the gold option letter A ('option A')"),
        # A pixel box on the student's 56 x 28 frames (112 x 84 video at 3136 pixels): x 14..42 -> 25..75 %,
        # y 0..14 -> 0..50 %.
        _line(r[4], synthetic_dir, None, outcome="mined", mine_key="k", source="dump.jsonl:3",
              patch=_patch(["spatial", "misconception"], None,
                           [{"frame": 0, "box": [14, 0, 42, 14], "coords": "pixel"}],
                           "Re-read what the question asks about the marked shape.")),
        _line(r[0], synthetic_dir, 4, video_path=str(synthetic_dir / "videos" / "missing.mp4"), outcome="improved",
              patched_answer="B", patched_reward=0.5, chosen_patched=True,
              patch=_patch(["temporal"], {"start": 2, "end": 3}, [], "Compare the last two frames, the answer is A.")),
    ]
    (out / "patch_log").mkdir()
    text = "".join(json.dumps(x) + "\n" for x in lines) + "{not json\n"
    (out / "patch_log" / "rank0.jsonl").write_text(text)
    (out / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "loss": 0.1, "ffr/intervention_ratio": 0.8 - 0.1 * s, "ffr/first_pass_accuracy":
                    0.2 + 0.1 * s}) + "\n" for s in range(1, 5)))
    (out / "run_config.json").write_text(json.dumps(CFG))
    return out


@pytest.fixture(scope="module")
def page(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert main([str(run_dir), "--out", str(out)]) == 0
    return out


def _data(page):
    blob = re.search(r'<script id="cards-data" type="application/json">(.*?)</script>', page.read_text(), re.S)
    return json.loads(blob.group(1))


def test_page_is_self_contained_with_summary_and_thumbnails(page):
    html = page.read_text()
    files = page.with_name("report_files")
    assert not re.search(r'(src|href)="(https?:)?//', html)  # no server, no CDN
    assert (files / "fig4_intervention.png").stat().st_size > 1000
    assert 'src="report_files/fig4_intervention.png"' in html
    # Table 5 over the 5 proposals (4 logged patches + 1 service drop); Table 10 over the 3 second rounds.
    assert "Answer leakage (Table 5)" in html
    assert "<td>annotation / v1</td><td>5</td><td>40.0%</td><td>0.0%</td><td>40.0%</td>" in html
    assert "<td>Overall</td><td>3</td><td>33.3%</td>" in html
    counts = dict(re.findall(r"<tr><th>([^<]+)</th><td>(\d+)</td></tr>", html.split('id="counts"')[1]))
    assert counts["requests"] == "7" and counts["outcome: fixed"] == "1" and counts["outcome: not fixed"] == "2"
    assert counts["outcome: leak"] == "1" and counts["outcome: no patch"] == "2"
    assert counts["error type: spatial"] == "2" and counts["flagged as leaking (audit)"] == "2"
    thumbs = set(re.findall(r'report_files/[0-9a-f]{12}_\d+\.jpg', html))
    assert thumbs and all((files / Path(t).name).is_file() for t in thumbs)


def test_cards_carry_the_evidence_block_answers_and_failure_details(page):
    data = _data(page)
    assert [d["o"] for d in data] == ["fixed", "not_fixed", "no_patch", "leak", "mined", "not_fixed", "no_patch"]
    assert [d["s"] for d in data] == [1, 2, 2, 3, None, 4, None]
    fixed, _, error, leak, mined, missing, bad = (d["h"] for d in data)
    assert EVIDENCE_HEADER in fixed and "- Regions (percent of width / height): frame 1" in fixed
    assert "A (reward 1)" in fixed and "patched (second) rollout" in fixed
    assert "backend: boom" in error and "second answer" not in error
    assert "gate" in leak and "names the gold option letter A" in leak and 'data-types="temporal"' in leak
    # The pixel box is rendered for the student with the frame size the run used (56 x 28).
    assert "frame 0 (0.0 s): x 25\u201375%, y 0\u201350%" in mined
    assert "No thumbnails: video not found" in missing and 'class="blank"' in missing
    assert '<span class="badge leak">leak</span>' in missing and "states the answer" in missing
    assert "Line not usable by the audit" in bad


def _chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (.ci/run installs the Debian package)")
    return exe


def _dom(page, fragment, tmp_path):
    cmd = [_chromium(), "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri() + fragment]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _cards(dom):
    return re.findall(r'<article class="card [^"]*" data-outcome="([^"]*)" data-step="([^"]*)"', dom)


def _boxes(dom):
    return [dict(re.findall(r'data-(\w+)="([^"]*)"', b)) | {"style": s}
            for b, s in re.findall(r'<div class="box[^"]*"([^>]*?) style="([^"]*)"', dom)]


def test_browser_renders_cards_and_boxes_at_their_coordinates(page, tmp_path):
    dom = _dom(page, "", tmp_path)
    assert len(_cards(dom)) == 7
    assert "7 of 7 requests match" in dom and "page 1 of 1" in dom
    boxes = _boxes(dom)
    # fixed card: relative box on frame 1; not-fixed card: norm1000 box with no frame, drawn on key frames 0 and 1;
    # mined card: pixel box on frame 0.
    assert [(b["frame"], b["left"], b["top"], b["width"], b["height"]) for b in boxes] == [
        ("1", "10.0", "20.0", "40.0", "40.0"), ("0", "10.0", "25.0", "30.0", "50.0"),
        ("1", "10.0", "25.0", "30.0", "50.0"), ("0", "25.0", "0.0", "50.0", "50.0")]
    assert boxes[0]["style"] == "left:10.0%;top:20.0%;width:40.0%;height:40.0%"
    first = dom.split("<article")[1]
    assert re.findall(r'<figure class="frame( key)?" data-frame="(\d)"', first) == [
        ("", "0"), (" key", "1"), (" key", "2"), ("", "3")]
    assert first.count("<img loading=\"lazy\" src=\"report_files/") == 4


@pytest.mark.parametrize("fragment, outcomes, shown", [
    ("#outcome=fixed", ["fixed"], "1 of 7"),
    # The service's drop and a logged patch the audit's gates flag.
    ("#outcome=leak", ["leak", "not_fixed"], "2 of 7"),
    ("#outcome=not_fixed", ["not_fixed", "not_fixed"], "2 of 7"),
    ("#type=spatial", ["fixed", "mined"], "2 of 7"),
    ("#from=2&to=3", ["not_fixed", "no_patch", "leak"], "3 of 7"),
    ("#q=BOOM", ["no_patch"], "1 of 7"),
    ("#size=3&page=3", ["no_patch"], "7 of 7"),
])
def test_browser_filters_and_pages_from_the_url_hash(page, tmp_path, fragment, outcomes, shown):
    dom = _dom(page, fragment, tmp_path)
    assert [o for o, _ in _cards(dom)] == outcomes
    assert f"{shown} requests match" in dom


def test_browser_screenshot(page, tmp_path):
    shot = tmp_path / "inspector.png"
    cmd = [_chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", f"--screenshot={shot}",
           "--window-size=1280,1600", page.resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_mined_and_audit_inputs_without_a_run_folder(run_dir, tmp_path, capsys):
    mined = tmp_path / "mined.jsonl"
    mined.write_text("\n".join(x for x in (run_dir / "patch_log" / "rank0.jsonl").read_text().splitlines()
                               if '"mined"' in x) + "\n")
    out = tmp_path / "m" / "page.html"
    assert main([str(mined), "--out", str(out), "--no-frames"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"wrote {out.resolve()}"
    data = _data(out)
    assert [d["o"] for d in data] == ["mined"] and "No thumbnails: frames not decoded" in data[0]["h"]
    assert "No metrics.jsonl among the inputs" in out.read_text()
    assert main([str(tmp_path / "nope.jsonl")]) == 2


def test_odd_lines_still_get_a_card(tmp_path):
    log = tmp_path / "odd.jsonl"
    log.write_text(json.dumps({"step": "x", "timestamps": "abc", "video_path": 5, "patch": {"bad": 1}}) + "\n[]\n\n")
    out = tmp_path / "odd.html"
    assert main([str(log), "--out", str(out)]) == 0
    data = _data(out)
    assert [(d["o"], d["s"]) for d in data] == [("no_patch", None), ("no_patch", None)]
    assert all("Line not usable by the audit" in d["h"] for d in data)
    assert "No thumbnails: no video path logged" in data[0]["h"]
