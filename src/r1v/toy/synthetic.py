"""Procedural video / image QA items in the Video-R1 schema, with evidence annotations.

`generate_dataset(out_dir, ...)` draws small scenes of coloured shapes
(`r1v.toy.draw`), encodes them to mp4 (PNG for image items) and writes
`out_dir/train.jsonl`, one record per line:
    problem_id, problem, data_type, problem_type, options, solution, path (relative to
    out_dir), data_source "synthetic/<scenario>", evidence (video items).
Scenarios follow the paper's Table 1: counting, dynamics, temporal, spatial, attribute,
plus OCR and free-form description. Each builder knows the exact frame schedule it drew,
so every gold answer is correct by construction (tests re-decode the videos to check).

evidence (shared data contract): time_span [t0, t1] seconds (a range around the key
event), region [x0, y0, x1, y1] relative or None, error_type, markers, guidance. Markers
and guidance point at *where/when* to look and never name the answer (no gold colour,
count, direction, order or text). Image items carry no evidence (no time axis).

Determinism: item i uses numpy Generator seeded with (seed, i); same seed, same records
and same pixels.
"""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from r1v.toy.draw import (OCR_ALPHABET, PALETTE, SHAPES, GenConfig, Sprite, TextSprite, always,
                                encode_mp4, n_frames_for, pick_objects, place_centers, rel_box, render_frames,
                                seconds, text_size)

logger = logging.getLogger(__name__)

LETTERS = "ABCD"
DIRECTIONS = {  # name -> unit (dx, dy) in image coordinates (y grows downwards)
    "left to right": (1, 0), "right to left": (-1, 0), "top to bottom": (0, 1), "bottom to top": (0, -1)}
RELATIONS = ("to the left", "to the right", "above", "below")
QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")


@dataclass
class Scene:
    """A built item: what to draw (frames scheduled by index) and the question fields."""

    n_frames: int
    sprites: list[Sprite]
    problem: str
    problem_type: str
    answer: str
    scenario: str
    options: list[str] = field(default_factory=list)
    texts: list[TextSprite] = field(default_factory=list)
    evidence: dict | None = None


def _multiple_choice(rng: np.random.Generator, correct: str, distractors) -> tuple[list[str], str]:
    """Options "A. ..." with the correct text at a random position; returns (options, letter)."""
    choices = [correct] + [d for d in distractors if d != correct][:3]
    order = rng.permutation(len(choices))
    texts = [choices[i] for i in order]
    return [f"{LETTERS[k]}. {t}" for k, t in enumerate(texts)], LETTERS[texts.index(correct)]


def _evidence(cfg, f0, f1, error_type, markers, guidance, region=None) -> dict:
    """The evidence annotation; frames [f0, f1) become time_span seconds."""
    return {"time_span": [seconds(f0, cfg), seconds(f1, cfg)], "region": region, "error_type": error_type,
            "markers": markers, "guidance": guidance}


# ----------------------------------------------------------------------------- video builders
def build_count_flashes(rng, cfg: GenConfig) -> Scene:
    """Counting: how many times one shape flashes (appears, then disappears)."""
    n = n_frames_for(rng, cfg)
    # 0.5 s on / 0.5 s off: a student sampling ~2 fps sees every flash and every gap.
    on = off = max(1, round(0.5 * cfg.fps))
    k_max = max(1, (n - 1 + off) // (on + off))
    k = int(rng.integers(min(2, k_max), min(5, k_max) + 1))
    (shape, color), *others = pick_objects(rng, 3)
    start = int(rng.integers(0, n - (k * on + (k - 1) * off) + 1))
    flashes = [(start + j * (on + off), start + j * (on + off) + on) for j in range(k)]
    pos = place_centers(rng, cfg, 3)
    sprites = [Sprite(shape, color, cfg.radius, pos[0], flashes)]
    sprites += [Sprite(s, c, cfg.radius, p, always(n)) for (s, c), p in zip(others, pos[1:])]
    options, letter = _multiple_choice(rng, str(k), [str(v) for v in rng.permutation(range(1, 7))])
    ev = _evidence(cfg, flashes[0][0], flashes[-1][1], "temporal",
                   [f"each separate appearance of the {color} {shape}", "the gaps while it is hidden"],
                   "Recount the separate appearances of the named shape within the marked time range.")
    return Scene(n, sprites, f"How many times does the {color} {shape} flash (appear and then disappear) "
                 "in the video?", "multiple choice", letter, "counting", options, evidence=ev)


def _mover(rng, cfg: GenConfig, n: int, direction: str):
    """A sprite that travels along `direction` between two frames; returns (sprite, m0, m1)."""
    w, h = cfg.size
    dx, dy = DIRECTIONS[direction]
    m = cfg.radius + 2
    if dx:  # [::-1] swaps the two ends for leftward / upward motion
        y = int(rng.integers(m, h - m))
        a, b = ((m, y), (w - m - 1, y))[::dx]
    else:
        x = int(rng.integers(m, w - m))
        a, b = ((x, m), (x, h - m - 1))[::dy]
    m0 = int(rng.integers(0, max(1, n // 5)))
    m1 = n - 1 - int(rng.integers(0, max(1, n // 5)))
    shape, color = pick_objects(rng, 1)[0]
    return Sprite(shape, color, cfg.radius, a, always(n), end=b, move=(m0, m1)), m0, m1


def build_dynamics(rng, cfg: GenConfig) -> Scene:
    """Dynamics: the direction in which a shape moves."""
    n = n_frames_for(rng, cfg)
    direction = str(rng.choice(list(DIRECTIONS)))
    sprite, m0, m1 = _mover(rng, cfg, n, direction)
    options, letter = _multiple_choice(rng, direction, list(DIRECTIONS))
    ev = _evidence(cfg, m0, m1 + 1, "temporal",
                   [f"where the {sprite.color} {sprite.shape} is when the motion starts", "where it is at the end"],
                   "Track the named shape across the marked clip and compare where it starts and where it stops.")
    return Scene(n, [sprite], f"In which direction does the {sprite.color} {sprite.shape} move?",
                 "multiple choice", letter, "dynamics", options, evidence=ev)


def build_temporal_order(rng, cfg: GenConfig) -> Scene:
    """Temporal order: which shape appears first (or last); shapes stay once they appear."""
    n = n_frames_for(rng, cfg)
    gap = max(2, round(0.5 * cfg.fps))  # entrances 0.5 s apart stay distinct at ~2 fps sampling
    k = min(int(rng.integers(3, 5)), (n - 1) // gap + 1)
    first = int(rng.integers(0, max(1, n - k * gap)))
    appear = [first + j * gap for j in range(k)]
    objs, pos = pick_objects(rng, k), place_centers(rng, cfg, k)
    sprites = [Sprite(s, c, cfg.radius, p, [(f, n)]) for (s, c), p, f in zip(objs, pos, appear)]
    which = str(rng.choice(["first", "last"]))
    target = objs[0] if which == "first" else objs[-1]
    names = [f"{c} {s}" for s, c in objs]
    options, letter = _multiple_choice(rng, f"{target[1]} {target[0]}", list(rng.permutation(names)))
    ev = _evidence(cfg, appear[0], appear[-1] + 1, "temporal", ["the moment each new shape enters the scene"],
                   "Examine the order in which the shapes enter during the marked time range, before and after "
                   "each entrance.")
    return Scene(n, sprites, f"Which shape appears {which} in the video?", "multiple choice", letter,
                 "temporal", options, evidence=ev)


def _relative_pair(rng, cfg: GenConfig, n: int):
    """Two static shapes offset >= 4 radii along one axis, <= r/2 across; returns (sprites, relation)."""
    (w, h), r, m = cfg.size, cfg.radius, cfg.radius + 2
    relation = str(rng.choice(RELATIONS))
    horizontal = relation in RELATIONS[:2]
    main_len, cross_len = (w, h) if horizontal else (h, w)
    p_small = int(rng.integers(m, main_len // 2 - 2 * r))
    p_big = int(rng.integers(p_small + 4 * r, main_len - m))
    cross = int(rng.integers(m + r // 2, cross_len - m - r // 2))
    jitter = int(rng.integers(-(r // 2), r // 2 + 1))
    a_main, b_main = (p_small, p_big) if relation in ("to the left", "above") else (p_big, p_small)
    pts = [(a_main, cross), (b_main, cross + jitter)]
    pts = pts if horizontal else [(y, x) for x, y in pts]  # (main, cross) -> (x, y)
    return [Sprite(sh, c, r, p, always(n)) for (sh, c), p in zip(pick_objects(rng, 2), pts)], relation


def build_spatial_relative(rng, cfg: GenConfig, n: int | None = None) -> Scene:
    """Spatial: where shape A lies relative to shape B (static scene)."""
    n = n_frames_for(rng, cfg) if n is None else n
    sprites, relation = _relative_pair(rng, cfg, n)
    a, b = sprites
    options, letter = _multiple_choice(rng, relation, list(RELATIONS))
    region = rel_box([a.start, b.start], cfg, cfg.radius + 3)
    ev = _evidence(cfg, 0, n, "spatial", [f"the {a.color} {a.shape}", f"the {b.color} {b.shape}"],
                   "Locate both named shapes inside the marked region and compare their positions.", region)
    return Scene(n, sprites, f"Where is the {a.color} {a.shape} located relative to the {b.color} {b.shape}?",
                 "multiple choice", letter, "spatial", options, evidence=ev)


def build_spatial_quadrant(rng, cfg: GenConfig) -> Scene:
    """Spatial: which quadrant of the frame a shape is in; three shapes in three quadrants."""
    n = n_frames_for(rng, cfg)
    w, h = cfg.size
    m = cfg.radius + 2
    quads = [int(q) for q in rng.permutation(4)[:3]]
    pos = [(int(rng.integers(m, w // 2 - m)) + (w // 2 if q % 2 else 0),
            int(rng.integers(m, h // 2 - m)) + (h // 2 if q >= 2 else 0)) for q in quads]
    objs = pick_objects(rng, 3)
    sprites = [Sprite(s, c, cfg.radius, p, always(n)) for (s, c), p in zip(objs, pos)]
    shape, color = objs[0]
    options, letter = _multiple_choice(rng, QUADRANTS[quads[0]], list(QUADRANTS))
    # The region covers all three shapes (so it spans several quadrants and cannot give the answer away).
    ev = _evidence(cfg, 0, n, "spatial", [f"the {color} {shape}", "the vertical and horizontal midlines of the frame"],
                   "Find the named shape within the marked region and relate it to the centre of the frame.",
                   rel_box(pos, cfg, cfg.radius + 3))
    return Scene(n, sprites, f"In which quadrant of the frame is the {color} {shape}?", "multiple choice",
                 letter, "spatial", options, evidence=ev)


def build_attribute(rng, cfg: GenConfig) -> Scene:
    """Attribute: the colour a shape turns into (the only one of its shape in the scene)."""
    n = n_frames_for(rng, cfg)
    shapes = [str(s) for s in rng.permutation(list(SHAPES))]
    c0, c1, *rest = [str(c) for c in rng.permutation(list(PALETTE))]
    fc = int(rng.integers(n // 3, 2 * n // 3))
    pos = place_centers(rng, cfg, 3)
    sprites = [Sprite(shapes[0], c0, cfg.radius, pos[0], always(n), recolor=[(fc, c1)])]
    sprites += [Sprite(s, c, cfg.radius, p, always(n)) for s, c, p in zip(shapes[1:], rest, pos[1:])]
    options, letter = _multiple_choice(rng, c1, [c for c in rng.permutation(list(PALETTE)) if c != c0])
    ev = _evidence(cfg, max(0, fc - 2), min(n, fc + 3), "spatial", [f"the moment the {shapes[0]}'s look changes"],
                   "Observe the visual features of the named shape right after the marked moment.",
                   rel_box([pos[0]], cfg, cfg.radius + 3))
    return Scene(n, sprites, f"The {shapes[0]} starts out {c0}. What colour is it after it changes?",
                 "multiple choice", letter, "attribute", options, evidence=ev)


def build_count_shapes(rng, cfg: GenConfig, n: int | None = None) -> Scene:
    """Numerical counting: how many shapes of one kind appear in total (staggered entrances)."""
    n = n_frames_for(rng, cfg) if n is None else n
    target, *others = [str(s) for s in rng.permutation(list(SHAPES))]
    k, d = int(rng.integers(1, 5)), int(rng.integers(1, 3))
    kinds = [target] * k + [str(rng.choice(others)) for _ in range(d)]
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    pos = place_centers(rng, cfg, len(kinds))
    colors = [str(rng.choice(list(PALETTE))) for _ in kinds]
    appear = sorted(int(f) for f in rng.integers(0, max(1, n // 2), size=len(kinds)))
    sprites = [Sprite(s, c, cfg.radius, p, [(f, n)]) for s, c, p, f in zip(kinds, colors, pos, appear)]
    ev = _evidence(cfg, appear[0], n, "spatial", [f"every {target} that enters the scene", "shape outlines"],
                   "Recount the shapes of the asked kind inside the marked region within the marked time range.",
                   rel_box(pos, cfg, cfg.radius + 3))
    return Scene(n, sprites, f"How many {target}s appear in the video in total?", "numerical", str(k),
                 "counting", evidence=ev)


def build_duration(rng, cfg: GenConfig) -> Scene:
    """Regression: for how many seconds a shape is visible (gold = visible frames / fps)."""
    n = n_frames_for(rng, cfg)
    length = int(rng.integers(max(2, n // 4), n - 2))
    f0 = int(rng.integers(1, n - length))
    objs, pos = pick_objects(rng, 2), place_centers(rng, cfg, 2)
    sprites = [Sprite(objs[0][0], objs[0][1], cfg.radius, pos[0], [(f0, f0 + length)]),
               Sprite(objs[1][0], objs[1][1], cfg.radius, pos[1], always(n))]
    pad0, pad1 = int(rng.integers(1, 4)), int(rng.integers(1, 4))  # random padding: span length != answer
    shape, color = objs[0]
    ev = _evidence(cfg, max(0, f0 - pad0), min(n, f0 + length + pad1), "temporal",
                   [f"when the {color} {shape} first appears", "when it vanishes"],
                   "Find when the named shape appears and disappears inside the marked window and measure the gap.")
    return Scene(n, sprites, f"For how many seconds is the {color} {shape} visible?", "regression",
                 f"{length / cfg.fps:g}", "temporal", evidence=ev)


def _ocr_text(rng, cfg: GenConfig) -> TextSprite:
    """3-5 random characters at scale 2 (1 if the frame is narrow), placed at random."""
    w, h = cfg.size
    text = "".join(str(c) for c in rng.choice(list(OCR_ALPHABET), size=int(rng.integers(3, 6))))
    scale = 2 if text_size(text, 2)[0] + 4 <= w else 1
    tw, th = text_size(text, scale)
    return TextSprite(text, int(rng.integers(2, w - tw - 1)), int(rng.integers(2, h - th - 1)), scale, [])


def build_ocr_video(rng, cfg: GenConfig) -> Scene:
    """OCR: block-letter text shown for part of the clip."""
    n = n_frames_for(rng, cfg)
    t = _ocr_text(rng, cfg)
    f0 = int(rng.integers(0, n // 3))
    f1 = int(rng.integers(max(f0 + 4, n // 2), n + 1))
    t.visible = [(f0, f1)]
    tw, th = t.size()
    region = rel_box([(t.x, t.y), (t.x + tw, t.y + th)], cfg, 2)
    ev = _evidence(cfg, f0, f1, "spatial", ["the characters shown on screen", "read them from left to right"],
                   "Read the characters inside the marked region during the marked time range.", region)
    return Scene(n, [], "What text is displayed in the video? Answer with the exact characters.", "OCR",
                 t.text, "ocr", texts=[t], evidence=ev)


def build_describe(rng, cfg: GenConfig) -> Scene:
    """Free-form: one-sentence description of a shape's motion (scored with ROUGE)."""
    n = n_frames_for(rng, cfg)
    direction = str(rng.choice(list(DIRECTIONS)))
    sprite, m0, m1 = _mover(rng, cfg, n, direction)
    ev = _evidence(cfg, m0, m1 + 1, "temporal", [f"the path of the {sprite.color} {sprite.shape}"],
                   "Track the named shape through the marked clip and describe how its position changes.")
    return Scene(n, [sprite], f"In one sentence, describe what the {sprite.color} {sprite.shape} does in the video.",
                 "free-form", f"The {sprite.color} {sprite.shape} moves from {direction}.", "description",
                 evidence=ev)


# ----------------------------------------------------------------------------- image builders
def build_image_spatial(rng, cfg: GenConfig) -> Scene:
    """Spatial relation of two shapes in a still image (multiple choice)."""
    return _as_image(build_spatial_relative(rng, cfg, n=1))


def build_image_count(rng, cfg: GenConfig) -> Scene:
    """How many shapes of one kind a still image holds (numerical)."""
    scene = build_count_shapes(rng, cfg, n=1)
    scene.problem = scene.problem.replace("appear in the video in total", "are in the image")
    return _as_image(scene)


def build_image_ocr(rng, cfg: GenConfig) -> Scene:
    """Block-letter text in a still image (OCR)."""
    t = _ocr_text(rng, cfg)
    t.visible = [(0, 1)]
    return Scene(1, [], "What text is written in the image? Answer with the exact characters.", "OCR",
                 t.text, "ocr", texts=[t])


def _as_image(scene: Scene) -> Scene:
    """One frame, everything visible, no evidence (images have no time axis)."""
    for s in scene.sprites:
        s.visible = [(0, 1)]
    scene.n_frames, scene.evidence = 1, None
    scene.problem = scene.problem.replace("in the video", "in the image")
    return scene


VIDEO_MC = (build_count_flashes, build_dynamics, build_temporal_order, build_spatial_relative,
            build_spatial_quadrant, build_attribute)
VIDEO_OTHER = (build_count_shapes, build_duration, build_ocr_video, build_describe)
IMAGE = (build_image_spatial, build_image_count, build_image_ocr)


def kind_schedule(include_images: bool, include_other_types: bool) -> list[Callable]:
    """One cycle of builders; the first len(set) items cover every kind, MC kinds twice per cycle."""
    return list(VIDEO_MC) + (list(VIDEO_OTHER) if include_other_types else []) + \
        (list(IMAGE) if include_images else []) + list(VIDEO_MC)


def _record(i: int, seed: int, scene: Scene, rel_path: str, data_type: str) -> dict:
    rec = {"problem_id": f"synthetic-{seed}-{i:04d}", "problem": scene.problem, "data_type": data_type,
           "problem_type": scene.problem_type, "options": scene.options,
           "solution": f"<answer>{scene.answer}</answer>", "path": rel_path,
           "data_source": f"synthetic/{scene.scenario}"}
    if scene.evidence is not None:
        rec["evidence"] = scene.evidence
    return rec


def generate_dataset(out_dir, n_items: int = 64, seed: int = 0, fps: int = 8,
                     duration_s: tuple[float, float] = (2.0, 4.0), size: tuple[int, int] = (112, 84),
                     include_images: bool = True, include_other_types: bool = True) -> Path:
    """Write out_dir/{videos,images}/ and out_dir/train.jsonl; return the jsonl path.

    size is (W, H), both even and at least 64x48; duration_s is the (min, max) clip length
    in seconds. fps >= 4 and min duration >= 2 s give every clip >= 8 frames, room for two
    0.5 s flashes with a gap, or for entrances 0.5 s apart.
    """
    w, h = size
    if w % 2 or h % 2 or w < 64 or h < 48:
        raise ValueError(f"size must be even and at least 64x48, got {size}")
    if not 2.0 <= duration_s[0] <= duration_s[1]:
        raise ValueError(f"duration_s must satisfy 2.0 <= min <= max, got {duration_s}")
    if fps < 4 or n_items < 1:
        raise ValueError(f"need fps >= 4 and n_items >= 1, got fps={fps}, n_items={n_items}")
    # Shapes scale with the frame (radius 7 at 112x84) so small frames still fit six of them.
    cfg = GenConfig(fps=fps, size=(w, h), duration_s=tuple(duration_s), radius=max(4, min(w, h) // 12))
    out = Path(out_dir)
    schedule = kind_schedule(include_images, include_other_types)
    records = []
    for i in range(n_items):
        builder = schedule[i % len(schedule)]
        scene = builder(np.random.default_rng([seed, i]), cfg)
        frames = render_frames(scene.sprites, scene.texts, scene.n_frames, cfg.size)
        kind = builder.__name__.removeprefix("build_")
        if builder in IMAGE:
            rel = f"images/{i:04d}_{kind}.png"
            (out / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(frames[0]).save(out / rel)
            records.append(_record(i, seed, scene, rel, "image"))
        else:
            rel = f"videos/{i:04d}_{kind}.mp4"
            encode_mp4(frames, out / rel, cfg.fps)
            records.append(_record(i, seed, scene, rel, "video"))
    jsonl = out / "train.jsonl"
    with open(jsonl, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
    logger.info("wrote %d synthetic items to %s", len(records), jsonl)
    return jsonl


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Generate the synthetic video QA set (Video-R1 schema + evidence).")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--n", type=int, default=64, help="number of items")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=int, default=8)
    p.add_argument("--width", type=int, default=112)
    p.add_argument("--height", type=int, default=84)
    p.add_argument("--duration", type=float, nargs=2, default=(2.0, 4.0), metavar=("MIN_S", "MAX_S"))
    p.add_argument("--no-images", action="store_true", help="video items only")
    p.add_argument("--mc-only", action="store_true", help="multiple-choice video scenarios only")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    path = generate_dataset(a.out, a.n, a.seed, a.fps, tuple(a.duration), (a.width, a.height),
                            include_images=not a.no_images, include_other_types=not a.mc_only)
    print(f"{a.n} items -> {path}")


if __name__ == "__main__":
    main()
