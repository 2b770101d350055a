"""Synthetic video QA: schema, decodability, and gold answers checked against decoded pixels."""
import json
import re

import av
import numpy as np
import pytest
from PIL import Image

from r1v.data import PROBLEM_TYPES, load_records
from r1v.toy.synthetic import DIRECTIONS, generate_dataset, main
from r1v.toy.draw import GLYPH_H, GLYPH_W, GLYPHS, PALETTE, classify_pixels, encode_mp4

FPS, SIZE, DURATION = 8, (112, 84), (2.0, 4.0)
COLORS = list(PALETTE)
MIN_PIXELS = 20  # a drawn shape covers ~100-150 pixels; compression noise never reaches 20


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    jsonl = generate_dataset(out, n_items=26, seed=3, fps=FPS, duration_s=DURATION, size=SIZE)
    return jsonl, load_records(jsonl)


def decode(path) -> np.ndarray:
    with av.open(path) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def gold(rec) -> str:
    return re.fullmatch(r"<answer>(.*)</answer>", rec["solution"]).group(1)


def gold_text(rec) -> str:
    """The answer as text: the chosen option's text for multiple choice."""
    g = gold(rec)
    if rec["problem_type"] != "multiple choice":
        return g
    return next(o[3:] for o in rec["options"] if o.startswith(f"{g}. "))


def kind(rec) -> str:
    return rec["rel_path"].split("_", 1)[1].rsplit(".", 1)[0]


def of_kind(records, name):
    found = [r for r in records if kind(r) == name]
    assert found, f"no {name} items generated"
    return found


def color_counts(frames: np.ndarray) -> np.ndarray:
    """(T, K) pixels per palette colour per frame."""
    idx = classify_pixels(frames.reshape(-1, frames.shape[-2], 3)).reshape(frames.shape[:3])
    return np.stack([(idx == k).sum(axis=(1, 2)) for k in range(len(COLORS))], axis=1)


def centroid(frame: np.ndarray, color: str) -> np.ndarray:
    ys, xs = np.nonzero(classify_pixels(frame) == COLORS.index(color))
    assert len(xs) >= MIN_PIXELS, f"{color} not visible"
    return np.array([xs.mean(), ys.mean()])


def named_color(problem: str) -> str:
    return next(c for c in COLORS if f"the {c} " in problem)


def read_glyphs(mask: np.ndarray) -> str:
    """Read block text from a boolean mask by matching each cell against GLYPHS."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    s = round((y1 - y0) / GLYPH_H)
    n = round(((x1 - x0) / s + 1) / (GLYPH_W + 1))
    out = ""
    for i in range(n):
        cx = x0 + i * (GLYPH_W + 1) * s
        cell = mask[y0 + s // 2:y0 + GLYPH_H * s:s, cx + s // 2:cx + GLYPH_W * s:s]
        scores = {ch: (cell == np.array([[(r >> (GLYPH_W - 1 - c)) & 1 for c in range(GLYPH_W)] for r in rows],
                                        bool)).sum() for ch, rows in GLYPHS.items()}
        out += max(scores, key=scores.get)
    return out


def test_records_load_and_cover_every_type(dataset):
    jsonl, records = dataset
    assert len(records) == 26
    assert {r["problem_type"] for r in records} == set(PROBLEM_TYPES)
    assert {r["data_type"] for r in records} == {"video", "image"}
    assert {r["data_source"] for r in records} >= {f"synthetic/{s}" for s in
                                                    ("counting", "dynamics", "temporal", "spatial", "attribute")}
    raw = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert all(not r["path"].startswith("/") for r in raw)  # relative to the output folder
    for r in records:
        assert re.fullmatch(r"<answer>.+</answer>", r["solution"])
        if r["problem_type"] == "multiple choice":
            assert gold(r) in "ABCD" and any(o.startswith(gold(r) + ". ") for o in r["options"])
        if r["problem_type"] in ("numerical", "regression"):
            float(gold(r))


def test_videos_decode_with_expected_frames(dataset):
    _, records = dataset
    for r in records:
        if r["data_type"] == "image":
            with Image.open(r["path"]) as im:
                assert im.size == SIZE and im.format == "PNG"
            continue
        with av.open(r["path"]) as c:
            stream = c.streams.video[0]
            assert stream.average_rate == FPS
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert round(DURATION[0] * FPS) <= len(frames) <= round(DURATION[1] * FPS)
        assert frames[0].shape == (SIZE[1], SIZE[0], 3)
        t0, t1 = r["evidence"]["time_span"]
        assert 0 <= t0 and t1 <= len(frames) / FPS + 1e-9 and t1 - t0 >= 2 / FPS  # a range, not one frame


def test_flash_counts_match_pixels(dataset):
    for r in of_kind(dataset[1], "count_flashes"):
        frames = decode(r["path"])
        on = color_counts(frames)[:, COLORS.index(named_color(r["problem"]))] >= MIN_PIXELS
        flashes = int(on[0]) + int(np.sum(on[1:] & ~on[:-1]))
        assert flashes == int(gold_text(r)), r["problem_id"]
        t0, t1 = r["evidence"]["time_span"]
        times = np.nonzero(on)[0] / FPS
        assert t0 <= times.min() and times.max() < t1


def test_temporal_order_matches_pixels(dataset):
    for r in of_kind(dataset[1], "temporal_order"):
        counts = color_counts(decode(r["path"]))
        names = [o[3:] for o in r["options"]]
        first = {n: int(np.argmax(counts[:, COLORS.index(n.split()[0])] >= MIN_PIXELS)) for n in names}
        assert len(set(first.values())) == len(names)  # entrances are distinct frames
        pick = min if "first" in r["problem"] else max
        assert gold_text(r) == pick(first, key=first.get), r["problem_id"]


def test_dynamics_and_description_match_motion(dataset):
    records = of_kind(dataset[1], "dynamics") + of_kind(dataset[1], "describe")
    for r in records:
        frames = decode(r["path"])
        color = named_color(r["problem"])
        d = centroid(frames[-1], color) - centroid(frames[0], color)
        axis = int(np.argmax(np.abs(d)))
        observed = [name for name, v in DIRECTIONS.items() if v[axis] == np.sign(d[axis])][0]
        assert observed in gold_text(r), r["problem_id"]


def test_attribute_and_spatial_match_pixels(dataset):
    records = dataset[1]
    for r in of_kind(records, "attribute"):
        counts = color_counts(decode(r["path"]))
        before = {COLORS[k] for k in np.nonzero(counts[0] >= MIN_PIXELS)[0]}
        after = {COLORS[k] for k in np.nonzero(counts[-1] >= MIN_PIXELS)[0]}
        assert after - before == {gold_text(r)}
    for r in of_kind(records, "spatial_relative") + of_kind(records, "image_spatial"):
        frame = decode(r["path"])[0] if r["data_type"] == "video" else np.array(Image.open(r["path"]))
        a, b = [c for c in COLORS if f"the {c} " in r["problem"]][:2]
        if r["problem"].index(f"the {a} ") > r["problem"].index(f"the {b} "):
            a, b = b, a
        dx, dy = centroid(frame, a) - centroid(frame, b)
        want = {"to the left": dx < -10, "to the right": dx > 10, "above": dy < -10, "below": dy > 10}
        assert want[gold_text(r)], (r["problem_id"], dx, dy)
    for r in of_kind(records, "spatial_quadrant"):
        x, y = centroid(decode(r["path"])[0], named_color(r["problem"]))
        assert gold_text(r) == f"{'top' if y < SIZE[1] / 2 else 'bottom'}-{'left' if x < SIZE[0] / 2 else 'right'}"


def test_duration_and_ocr_match_pixels(dataset):
    records = dataset[1]
    for r in of_kind(records, "duration"):
        on = color_counts(decode(r["path"]))[:, COLORS.index(named_color(r["problem"]))] >= MIN_PIXELS
        assert on.sum() / FPS == pytest.approx(float(gold(r)))
    for r in of_kind(records, "ocr_video"):
        frames = decode(r["path"])
        t0, t1 = r["evidence"]["time_span"]
        frame = frames[int(round((t0 + t1) / 2 * FPS))]
        assert read_glyphs(frame.min(axis=-1) > 160) == gold(r)
    for r in of_kind(records, "image_ocr"):
        assert read_glyphs(np.array(Image.open(r["path"])).min(axis=-1) > 160) == gold(r)


def test_evidence_contract_and_no_answer_leak(dataset):
    from ffr.patch import evidence_to_patch

    for r in dataset[1]:
        if r["data_type"] == "image":
            assert "evidence" not in r
            continue
        ev = r["evidence"]
        assert ev["error_type"] in ("temporal", "spatial", "misconception")
        assert 1 <= len(ev["markers"]) <= 5 and all(len(m) <= 80 for m in ev["markers"])
        if r["data_source"] in ("synthetic/spatial", "synthetic/ocr", "synthetic/attribute"):
            x0, y0, x1, y1 = ev["region"]
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
        hint = " ".join(ev["markers"] + [ev["guidance"]]).lower()
        answer = gold_text(r).lower()
        if r["problem_type"] == "free-form":
            answer = next(d for d in DIRECTIONS if d in answer)
        assert not re.search(rf"\b{re.escape(answer)}\b", hint), (r["problem_id"], answer, hint)
        assert not re.search(r"\d", hint)  # no counts, times or text characters in the words
        patch = evidence_to_patch(ev, timestamps=list(np.arange(0.0, DURATION[1] + 0.01, 0.5)))
        assert patch.guidance == ev["guidance"]


def test_deterministic_for_a_seed(tmp_path):
    a = generate_dataset(tmp_path / "a", n_items=4, seed=7)
    b = generate_dataset(tmp_path / "b", n_items=4, seed=7)
    c = generate_dataset(tmp_path / "c", n_items=4, seed=8)
    assert a.read_text() == b.read_text()
    assert a.read_text() != c.read_text()
    first = json.loads(a.read_text().splitlines()[0])["path"]
    np.testing.assert_array_equal(decode(tmp_path / "a" / first), decode(tmp_path / "b" / first))


def test_options_and_errors(tmp_path, capsys):
    jsonl = generate_dataset(tmp_path / "mc", n_items=12, seed=1, include_images=False, include_other_types=False)
    assert {r["problem_type"] for r in load_records(jsonl)} == {"multiple choice"}
    with pytest.raises(ValueError, match="even"):
        generate_dataset(tmp_path / "bad", n_items=1, size=(111, 84))
    with pytest.raises(ValueError, match="duration_s"):
        generate_dataset(tmp_path / "bad", n_items=1, duration_s=(1.0, 2.0))
    with pytest.raises(ValueError, match="fps"):
        generate_dataset(tmp_path / "bad", n_items=1, fps=2)
    # the smallest allowed clips (8 frames) still hold every scenario
    short = load_records(generate_dataset(tmp_path / "short", n_items=13, seed=2, fps=4, duration_s=(2.0, 2.0),
                                          size=(64, 48)))
    assert len(short) == 13 and {len(r["options"]) for r in short if r["options"]} <= {2, 3, 4}
    main(["--out", str(tmp_path / "cli"), "--n", "3", "--seed", "0"])
    assert len((tmp_path / "cli" / "train.jsonl").read_text().splitlines()) == 3
    assert "3 items" in capsys.readouterr().out


def test_mpeg4_fallback_encodes(tmp_path):
    frames = np.zeros((6, 48, 64, 3), np.uint8)
    frames[:, 10:30, 10:30] = PALETTE["red"]
    out = encode_mp4(frames, tmp_path / "m.mp4", fps=8, codec="mpeg4")
    got = decode(out)
    assert got.shape == frames.shape
    assert classify_pixels(got[3])[20, 20] == COLORS.index("red")
