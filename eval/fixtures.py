"""Small benchmark fixtures in each release's real layout, written on demand (no binaries shipped).

``write_fixtures(root)`` writes, for each of the eight benchmarks, a few items in the official
format (file names and field names as released; texts taken from or modelled on real items),
the Video-R1-eval style json where such a file exists upstream, and tiny H.264 videos (64x48,
2 s at 4 fps, PyAV). Tests and the end-to-end run use it; ``python -m eval.fixtures --out DIR``
writes them from the command line.

Returns ``{name: {"root": str, "official": [paths], "video-r1": path | None, "videos": [paths]}}``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from fractions import Fraction

import av
import numpy as np

from eval.benchmarks.mvbench import TASKS as MVBENCH_TASKS

logger = logging.getLogger(__name__)

WIDTH, HEIGHT, FPS, N_FRAMES = 64, 48, 4, 8


def write_video(path: str, seed: int = 0) -> str:
    """A tiny H.264 mp4: a bright square moving left to right on a seeded background colour."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 120, size=3, dtype=np.uint8)
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.time_base = Fraction(1, FPS)
        for t in range(N_FRAMES):
            frame = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
            frame[:] = background
            x = 4 + t * (WIDTH - 20) // N_FRAMES
            frame[16:32, x:x + 12] = 255
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = t
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))
    return path


class _Writer:
    """Writes one benchmark's files under ``root/<name>`` and records their paths."""

    def __init__(self, root: str, name: str, template: str):
        self.root = os.path.join(root, name)
        self.template = template
        self.paths = {"root": self.root, "official": [], "video-r1": None, "videos": []}

    def json(self, rel: str, obj, kind: str = "official", lines: bool = False) -> None:
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            if lines:
                fh.writelines(json.dumps(o, ensure_ascii=False) + "\n" for o in obj)
            else:
                json.dump(obj, fh, ensure_ascii=False, indent=1)
        if kind == "official":
            self.paths["official"].append(path)
        else:
            self.paths["video-r1"] = path

    def video(self, rel: str) -> None:
        path = os.path.join(self.root, rel)
        if path not in self.paths["videos"]:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            shutil.copyfile(self.template, path)
            self.paths["videos"].append(path)


def _r1(pid, problem, options, answer, path, ptype="multiple choice", **more) -> dict:
    """One Video-R1-eval record (contract-1 schema)."""
    return {"problem_id": pid, "problem": problem, "data_type": "video", "problem_type": ptype,
            "options": options, "process": "", "solution": f"<answer>{answer}</answer>", "path": path,
            "data_source": "fixture", **more}


def _mmvu(w: _Writer) -> None:
    url = "https://huggingface.co/datasets/yale-nlp/MMVU/resolve/main/videos/{}"
    items = [("validation_1", "Chemistry/0.mp4", "Chemistry", "multiple-choice",
              "Assume that 2.24 liters of gas fully participates in the reaction shown in the video. How many grams "
              "of precipitate are produced approximately?", ["10.0", "5.0", "12.0", "15.0", "20.0"], "A"),
             ("validation_2", "Art/1.mp4", "Art", "multiple-choice", "Which painting technique is demonstrated?",
              ["Impasto", "Glazing", "Sgraffito", "Scumbling", "Fresco"], "C"),
             ("validation_3", "Clinical_Medicine/2.mp4", "Clinical Medicine", "multiple-choice",
              "Which sign does the examiner elicit?", ["Babinski", "Romberg", "Kernig", "Brudzinski", "Hoffmann"], "B"),
             ("validation_4", "Art/3.mp4", "Art", "open-ended", "What camera technique is used?", None, "Dolly Zoom")]
    records, r1 = [], []
    for i, (rid, rel, subject, qtype, q, opts, ans) in enumerate(items):
        choices = dict(zip("ABCDE", opts)) if opts else {k: "" for k in "ABCDE"}
        records.append({"id": rid, "video": url.format(rel), "youtube_url": "https://www.youtube.com/watch?v=x",
                        "question_type": qtype, "metadata": {"subject": subject, "textbook": "t", "knowledge": [],
                                                             "rationale": "r"},
                        "question": q, "choices": choices, "answer": ans})
        w.video(f"videos/{rel}")
        if opts:
            r1.append(_r1(i + 1, q, [f"{k}. {v}" for k, v in choices.items()], ans, f"videos/{rel}",
                          original_question_type=qtype))
    w.json("validation.json", records)
    w.json("eval_mmvu.json", r1, "video-r1")


def _vsibench(w: _Writer) -> None:
    rows = [(1, "arkitscenes", "41069025", "object_rel_distance",
             "Measuring from the closest point of each object, which of these objects (table, sofa, stool, tv) "
             "is the closest to the stove?", ["A. table", "B. sofa", "C. stool", "D. tv"], "A"),
            (2, "scannet", "scene0011_00", "object_counting", "How many chair(s) are in this room?", None, "4"),
            (3, "scannet", "scene0011_00", "object_rel_direction_easy",
             "If I am standing by the bed and facing the door, is the lamp to my left or right?",
             ["A. left", "B. right"], "B"),
            (4, "arkitscenes", "41069025", "room_size_estimation",
             "What is the size of this room (in square meters)?", None, "20.5")]
    records, r1 = [], []
    for rid, ds, scene, qtype, q, opts, gt in rows:
        records.append({"id": rid, "dataset": ds, "scene_name": scene, "question_type": qtype, "question": q,
                        "options": opts, "ground_truth": gt})
        w.video(f"{ds}/{scene}.mp4")
        r1.append(_r1(rid, q, opts or [], gt, f"{ds}/{scene}.mp4", "multiple choice" if opts else "regression",
                      original_question_type=qtype))
    w.json("test.jsonl", records, lines=True)
    w.json("eval_vsibench.json", r1, "video-r1")


def _videommmu(w: _Writer) -> None:
    sugar = ["aldose", "ketose", "glucose", "fructose", "ribose", "xylose", "arabinose", "mannose", "galactose",
             "sucrose"]
    tracks = {
        "Perception": [{"id": "dev_Biology_3", "question": "Which sugar is named in the lecture?", "options": sugar,
                        "answer": "C"}],
        "Comprehension": [{"id": "dev_Biology_3", "question": "Why is the sugar an aldose?", "options":
                           ["It has an aldehyde group", "It has a ketone group", "It is a disaccharide",
                            "It is a pentose"], "answer": "A"}],
        "Adaptation": [{"id": "dev_Biology_3", "question": "<image 1> What kind of sugar is this, aldose or ketose?",
                        "options": sugar, "answer": "A", "question_type": "multiple-choice"},
                       {"id": "validation_Chemistry_13", "question": "Solution A is a calcium hydroxide solution "
                        "<image 1> with a concentration of 0.350 M and a volume of 500. mL. What mass of calcium "
                        "hydroxide was dissolved?", "options": [], "answer": "12.97", "question_type": "open"}],
    }
    r1, pid = [], 0
    for track, items in tracks.items():
        w.json(f"data/{track.lower()}_video.json", {track: {str(i): rec for i, rec in enumerate(items)}})
        for rec in items:
            w.video(f"Science/{rec['id']}.mp4")
            pid += 1
            q = rec["question"].replace("<image 1>", "")
            if rec["options"]:
                opts = [f"{'ABCDEFGHIJ'[i]}. {o}" for i, o in enumerate(rec["options"])]
                r1.append(_r1(pid, q, opts, rec["answer"], f"Science/{rec['id']}.mp4", track=track))
            else:
                r1.append(_r1(pid, q, None, rec["answer"], f"Science/{rec['id']}.mp4", "numerical", track=track))
    w.json("eval_videommmu.json", r1, "video-r1")


def _videoholmes(w: _Writer) -> None:
    opts = {"A": "Make sure to answer your friend's call.", "B": "Avoid being disturbed while taking a bath.",
            "C": "Prepare to play games for a long time.", "D": "Prevent the phone from overheating",
            "E": "Test the function of the charger.", "F": "Save the remaining power."}
    rel = {"A": "neighbor", "B": "colleague", "C": "brother", "D": "Doctors and patients", "E": "stranger",
           "F": "friend"}
    items = [("fH6bbNJJfqk", 1, "SR", "What is the relationship between the man with a black beard and Benjamin?",
              rel, "F"),
             ("fH6bbNJJfqk", 2, "IMC", "What was the intention of the man with a black beard to charge his phone "
              "at 0:28?", opts, "A"),
             ("mHNG7qZEeek", 1, "CTI", "What is the core warning of this film?",
              {k: f"theme {k}" for k in "ABCDEF"}, "F")]
    records, r1 = [], []
    for i, (vid, qid, qtype, q, o, ans) in enumerate(items):
        records.append({"video ID": vid, "Question ID": qid, "Question Type": qtype, "Question": q, "Options": o,
                        "Answer": ans, "Explanation": "because"})
        w.video(f"videos/{vid}.mp4")
        r1.append(_r1(i + 1, q, [f"{k}. {v}" for k, v in o.items()], ans, f"videos/{vid}.mp4",
                      original_question_type=qtype, video=f"{vid}.mp4"))
    w.json("test_Video-Holmes.json", records)
    w.json("eval_videoholmes.json", r1, "video-r1")


def _longvideobench(w: _Writer) -> None:
    items = [("86CxyhFV9MI", 0, "In the video, which subtitles appear at the same time as the man with black hair "
              "on stage?", ["promisc has come to an end", "run away countless times", "front of our crown",
                            "captain of the godson"], 1, 600, "T3O", "L2-Relation"),
             ("9PD3ciudpIE", 0, "When the subtitle says 'temples scattered throughout the', what color is the "
              "woman's clothing?", ["yellow", "green", "blue", "red", "white"], 0, 15, "S2A", "L1-Perception")]
    records, r1 = [], []
    for i, (vid, k, q, cands, correct, group, cat, level) in enumerate(items):
        records.append({"video_id": vid, "id": f"{vid}_{k}", "video_path": f"{vid}.mp4",
                        "subtitle_path": f"{vid}_en.json", "question": q, "candidates": cands,
                        "correct_choice": correct, "duration_group": group, "question_category": cat,
                        "topic_category": "NP-News-Programs", "starting_timestamp_for_subtitles": 0.0,
                        "duration": 2.0, "level": level, "position": [0], "view_count": 1,
                        "question_wo_referring_query": q})
        w.video(f"videos/{vid}.mp4")
        r1.append(_r1(i + 1, q, [f"{'ABCDE'[j]}. {c}" for j, c in enumerate(cands)], "ABCDE"[correct],
                      f"videos/{vid}.mp4", original_question_type="multiple-choice"))
    w.json("lvb_val.json", records)
    w.json("eval_lvb.json", r1, "video-r1")


def _lvbench(w: _Writer) -> None:
    videos = [{"key": "Cm73ma6Ibcs", "type": "cartoon",
               "video_info": {"duration_minutes": 71.2, "fps": 25.0, "resolution": {"width": 1280, "height": 720}},
               "qa": [{"uid": "55", "question": "What year appears in the opening caption of the video?\n(A) 1636\n"
                       "(B) 1366\n(C) 1363\n(D) 1633", "answer": "D",
                       "question_type": ["key information retrieval"], "time_reference": "00:15-00:19"},
                      {"uid": "56", "question": "Why does the hero leave the village?\n(A) to find food\n"
                       "(B) to rescue a friend\n(C) to flee a storm\n(D) to sell goods", "answer": "B",
                       "question_type": ["reasoning", "event understanding"], "time_reference": "10:00-12:00"}]},
              {"key": "xY0dRt8Zk1A", "type": "sport", "video_info": {"duration_minutes": 60.0},
               "qa": [{"uid": "901", "question": "Which team scores first?\n(A) red\n(B) blue\n(C) green\n"
                       "(D) yellow", "answer": "A", "question_type": ["temporal grounding"],
                       "time_reference": "05:00-05:10"}]}]
    for v in videos:
        w.video(f"videos/{v['key']}.mp4")
    w.json("video_info.meta.jsonl", videos, lines=True)


def _mvbench(w: _Writer) -> None:
    from PIL import Image

    r1 = []
    for i, (task, (source, kind, bounded)) in enumerate(MVBENCH_TASKS.items()):
        video = f"clip_{i}" if kind == "frames" else f"clip_{i}.mp4"
        rec = {"video": video, "question": f"What happened after the person took the food? ({task})",
               "candidates": ["Ate the medicine.", "Tidied up the blanket.", "Put down the cup/glass/bottle.",
                              "Took the box."], "answer": "Tidied up the blanket."}
        if bounded:
            rec.update(start=0.2, end=1.8)
        w.json(f"json/{task}.json", [rec])
        if kind == "frames":
            folder = os.path.join(w.root, "video", source, video)
            os.makedirs(folder, exist_ok=True)
            for f in range(4):
                Image.new("RGB", (WIDTH, HEIGHT), (40 * f, 80, 120)).save(os.path.join(folder, f"{f + 1:05d}.jpg"))
        else:
            w.video(f"video/{source}/{video}")
        r1.append(_r1(i + 1, rec["question"], [f"{'ABCD'[j]}. {c}" for j, c in enumerate(rec["candidates"])],
                      "B", f"video/{source}/{video}", task=task))
    w.json("eval_mvbench.json", r1, "video-r1")


def _tempcompass(w: _Writer) -> None:
    vid = "1034419625"
    mc = {vid: {"action": [{"question": "What is the man doing in the video?\nA. dunking a basketball\n"
                            "B. dribbling a basketball\nC. passing a basketball", "answer": "A. dunking a basketball"}],
                "speed": [{"question": "How fast is the video?\nA. normal speed\nB. slow motion\nC. time-lapse\n"
                           "D. reversed", "answer": "B. slow motion"}]}}
    yes_no = {vid: {"action": [{"question": "Is the man dunking a basketball?", "answer": "yes"},
                               {"question": "Is the man passing a basketball?", "answer": "no"}]}}
    cm = {vid: {"action": [{"question": "Which caption matches the video better?\nCaption A: A man is dunking a "
                            "basketball.\nCaption B: The man is shooting a basketball.",
                            "answer": "Caption A: A man is dunking a basketball."}],
                "speed": [{"question": "Which description is a more suitable match for the video?\nOption 1: The "
                           "video is in time-lapse.\nOption 2: The video is in slow motion.",
                           "answer": "Option 2: The video is in slow motion."}]}}
    cap = {vid: {"action": [{"question": "You will be presented with a video and several pieces of information. "
                             "Write a caption that matches the video.\nInformation A: dunking\nInformation B: "
                             "passing\nGenerated Caption:", "answer": "A. dunking a basketball"}]}}
    for task, obj in (("multi-choice", mc), ("yes_no", yes_no), ("caption_matching", cm), ("captioning", cap)):
        w.json(f"questions/{task}.json", obj)
    w.json("meta_info.json", {vid: {"eval_dim": {"action": {"type": "fine-grained action"},
                                                 "speed": {"type": "absolute speed"}}}})
    w.video(f"videos/{vid}.mp4")
    r1 = [_r1(1, "What is the man doing in the video?", ["A. dunking a basketball", "B. dribbling a basketball",
                                                          "C. passing a basketball"], "A", f"videos/{vid}.mp4",
              dim="action")]
    w.json("eval_tempcompass.json", r1, "video-r1")


WRITERS = {"mmvu": _mmvu, "vsibench": _vsibench, "videommmu": _videommmu, "videoholmes": _videoholmes,
           "longvideobench": _longvideobench, "lvbench": _lvbench, "mvbench": _mvbench, "tempcompass": _tempcompass}


def write_fixtures(root: str, names: list[str] | None = None) -> dict[str, dict]:
    """Write the fixtures of ``names`` (default: all eight) under ``root/<name>/``; return their paths."""
    unknown = set(names or []) - set(WRITERS)
    if unknown:
        raise ValueError(f"unknown fixture(s) {sorted(unknown)}; known: {sorted(WRITERS)}")
    os.makedirs(root, exist_ok=True)
    template = write_video(os.path.join(root, "_template.mp4"))
    out = {}
    for name in names or list(WRITERS):
        writer = _Writer(root, name, template)
        WRITERS[name](writer)
        out[name] = writer.paths
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write small benchmark fixtures (official + Video-R1 formats).")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    paths = write_fixtures(args.out)
    print(json.dumps({k: v["root"] for k, v in paths.items()}, indent=1))


if __name__ == "__main__":
    main()
