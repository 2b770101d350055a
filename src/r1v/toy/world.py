"""The toy world of the "Does it learn?" experiment: coloured-grid videos whose answer sits in a
few frames or one region, sized so that a ~2 M-parameter student can see the evidence.

Every frame is a ``grid`` x ``grid`` board of square cells, each filled with one palette colour
(or the grey ``OFF`` colour). At the default 112 x 112 pixels and ``grid`` 2, a cell is 56 x 56
pixels: with Qwen2.5-VL's 14-pixel patches merged 2 x 2 and frames paired in time, one cell is
2 x 2 video tokens in each of the clip's two temporal slices (32 video tokens for 4 frames). A
smaller signal does not train a tiny student (a shape covering ~2% of a 56 x 56 frame stayed at
chance for 1,200 supervised steps; whole-frame colour reaches 100% in 50).

Scenarios (one per error kind of the paper's taxonomy, Table 1/6), all with the evidence
annotation of ``r1v.toy.synthetic`` (time_span seconds, relative region, error_type, markers,
guidance that never names the answer). In the first two the question does not say *where* to look,
so a patch that points at the right frames or cell is evidence the student did not have:
- ``lit_colour`` (temporal, multiple choice): one square is grey in the first half of the clip and
  lights up in the second; "What colour is the square that lights up?"; the evidence is that half
  and that cell.
- ``marked_colour`` (spatial, multiple choice): one square of the board has a white border; "What
  colour is the square with the white border?"; the region is that cell.
- ``absent_colour`` (misconception, multiple choice): three of the four colours appear; "Which
  colour does not appear?"; the guidance restates what the question asks.
- ``count_cells`` (spatial, numerical): "How many squares are red?" (1 .. grid² - 1).
A fifth scenario, ``cell_colour`` ("What colour is the top-left square at the end of the
video?", on two independent boards, one per half of the clip), is the toy's *vision pre-training*
(frames → attributes): it is never in the task mix, only in the optional pre-training split of
the warm start, where it stands in for the pretrained encoder a real VLM brings.
Multiple-choice options list the palette in one fixed order (``OPTIONS``), so no letter mapping
has to be learned. All difficulty knobs are the fields of ``ToyWorld``.

Determinism: item i of a split uses ``numpy.random.default_rng([seed, i])``.
"""
from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from r1v.toy.draw import encode_mp4

logger = logging.getLogger(__name__)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 30, 30), "green": (30, 200, 40), "blue": (40, 70, 235), "yellow": (235, 225, 30),
}  # fmt: skip
OFF = (110, 110, 110)
LETTERS = "ABCD"
OPTIONS = [f"{LETTERS[i]}. {name}" for i, name in enumerate(COLOURS)]
SCENARIOS = ("lit_colour", "marked_colour", "absent_colour", "count_cells")
ERROR_TYPE = {"lit_colour": "temporal", "marked_colour": "spatial", "absent_colour": "misconception",
              "count_cells": "spatial"}  # fmt: skip
GREY = -1  # board value of a cell that shows the OFF colour


@dataclass(frozen=True)
class ToyWorld:
    """Difficulty knobs of the toy world (all in one place; the experiment's protocol file sets them)."""

    size: int = field(default=112, metadata={"help": "Frame width = height in pixels (a multiple of 28 * grid)."})
    grid: int = field(default=2, metadata={"help": "Cells per side of the board (2: four quadrants)."})
    n_frames: int = field(default=4, metadata={"help": "Frames per clip (even: Qwen pairs frames in time)."})
    fps: int = field(default=2, metadata={"help": "Frame rate of the written clips."})
    noise: float = field(default=0.0, metadata={"help": "Std of Gaussian pixel noise (0-255 scale)."})
    border: int = field(default=6, metadata={"help": "Width in pixels of the white border of marked_colour."})
    mix: tuple[float, ...] = field(
        default=(0.3, 0.3, 0.2, 0.2),
        metadata={"help": "Share of each scenario, in SCENARIOS order: lit, marked, absent, count."},
    )

    def __post_init__(self):
        if self.grid < 2 or self.size % (28 * self.grid):
            raise ValueError(f"size {self.size} must be a multiple of 28 * grid ({28 * self.grid}), grid >= 2")
        if self.n_frames < 2 or self.n_frames % 2 or self.fps < 1:
            raise ValueError(f"n_frames must be even and >= 2 and fps >= 1, got {self.n_frames}, {self.fps}")
        if len(self.mix) != len(SCENARIOS) or min(self.mix) < 0 or sum(self.mix) <= 0:
            raise ValueError(f"mix needs {len(SCENARIOS)} non-negative shares with a positive sum, got {self.mix}")
        if self.noise < 0:
            raise ValueError(f"noise must be >= 0, got {self.noise}")


def cell_name(world: ToyWorld, r: int, c: int) -> str:
    """'top-left' style names on a 2 x 2 board, 'row 1, column 3' (1-based) on larger boards."""
    if world.grid == 2:
        return f"{('top', 'bottom')[r]}-{('left', 'right')[c]}"
    return f"row {r + 1}, column {c + 1}"


def cell_box(world: ToyWorld, r: int, c: int) -> list[float]:
    """Relative [x0, y0, x1, y1] of a cell."""
    g = world.grid
    return [c / g, r / g, (c + 1) / g, (r + 1) / g]


def _seconds(world: ToyWorld, f0: int, f1: int) -> list[float]:
    """Time span of frames [f0, f1) as [first frame's time, last frame's time] seconds."""
    return [f0 / world.fps, (f1 - 1) / world.fps]


def _evidence(span, region, error_type, markers, guidance) -> dict:
    return {"time_span": span, "region": region, "error_type": error_type, "markers": markers,
            "guidance": guidance}


def _mc(problem: str, colour: str) -> dict:
    return {"problem": problem, "problem_type": "multiple choice", "options": list(OPTIONS),
            "answer": LETTERS[list(COLOURS).index(colour)]}


def _board(rng, world: ToyWorld) -> np.ndarray:
    """(grid, grid) colour indices drawn independently."""
    return rng.integers(0, len(COLOURS), size=(world.grid, world.grid))


def scene_lit_colour(rng, world: ToyWorld):
    """Temporal: one cell is grey in the first half and lights up in the second; ask its colour."""
    board = _board(rng, world)
    r, c = (int(v) for v in rng.integers(0, world.grid, size=2))
    dark = board.copy()
    dark[r, c] = GREY
    half = world.n_frames // 2
    item = _mc("One square lights up during the video. What colour is the square that lights up?",
               list(COLOURS)[board[r, c]])
    item["evidence"] = _evidence(_seconds(world, half, world.n_frames), cell_box(world, r, c), "temporal",
                                 ["the square that is grey at first and then lights up"],
                                 "Look at the marked square in the marked frames.")
    return [(dark, None)] * half + [(board, None)] * half, item


def scene_marked_colour(rng, world: ToyWorld):
    """Spatial: one cell of a static board has a white border; ask its colour."""
    board = _board(rng, world)
    r, c = (int(v) for v in rng.integers(0, world.grid, size=2))
    item = _mc("One square has a white border. What colour is the square with the white border?",
               list(COLOURS)[board[r, c]])
    item["evidence"] = _evidence(_seconds(world, 0, world.n_frames), cell_box(world, r, c), "spatial",
                                 ["the square with the white border"], "Look only at the marked square of the board.")
    return [(board, (r, c))] * world.n_frames, item


def scene_absent_colour(rng, world: ToyWorld):
    """Misconception: every colour but one appears; ask for the missing one."""
    missing = int(rng.integers(0, len(COLOURS)))
    present = [i for i in range(len(COLOURS)) if i != missing]
    cells = present + [int(rng.choice(present)) for _ in range(world.grid**2 - len(present))]
    board = np.array([cells[i] for i in rng.permutation(len(cells))]).reshape(world.grid, world.grid)
    item = _mc("Which colour does not appear anywhere in the video?", list(COLOURS)[missing])
    item["evidence"] = _evidence(_seconds(world, 0, world.n_frames), [0.0, 0.0, 1.0, 1.0], "misconception",
                                 ["every square of the board"],
                                 "The question asks for the colour that is missing, not for a colour that is shown.")
    return [(board, None)] * world.n_frames, item


def scene_count_cells(rng, world: ToyWorld):
    """Spatial, numerical: how many cells show one colour (1 .. grid^2 - 1)."""
    n_cells = world.grid**2
    target = int(rng.integers(0, len(COLOURS)))
    k = int(rng.integers(1, n_cells))
    others = [i for i in range(len(COLOURS)) if i != target]
    cells = [target] * k + [int(rng.choice(others)) for _ in range(n_cells - k)]
    board = np.array([cells[i] for i in rng.permutation(n_cells)]).reshape(world.grid, world.grid)
    name = list(COLOURS)[target]
    item = {"problem": f"How many squares of the board are {name}?", "problem_type": "numerical", "options": [],
            "answer": str(k)}
    item["evidence"] = _evidence(_seconds(world, 0, world.n_frames), [0.0, 0.0, 1.0, 1.0], "spatial",
                                 [f"each {name} square"], "Go over every square of the board in turn.")
    return [(board, None)] * world.n_frames, item


def scene_cell_colour(rng, world: ToyWorld):
    """Pre-training attribute: the colour of a named cell at the start or the end of the clip."""
    first, second = _board(rng, world), _board(rng, world)
    r, c = (int(v) for v in rng.integers(0, world.grid, size=2))
    when = str(rng.choice(["start", "end"]))
    half = world.n_frames // 2
    board = first if when == "start" else second
    where = cell_name(world, r, c)
    item = _mc(f"What colour is the {where} square at the {when} of the video?", list(COLOURS)[board[r, c]])
    f0, f1 = (0, half) if when == "start" else (half, world.n_frames)
    item["evidence"] = _evidence(_seconds(world, f0, f1), cell_box(world, r, c), "spatial", [f"the {where} square"],
                                 "Look only at the marked square in the marked frames.")
    return [(first, None)] * half + [(second, None)] * half, item


PRETRAIN_SCENARIO = "cell_colour"
BUILDERS = {"cell_colour": scene_cell_colour, "lit_colour": scene_lit_colour, "marked_colour": scene_marked_colour,
            "absent_colour": scene_absent_colour, "count_cells": scene_count_cells}  # fmt: skip


def render(frames: list[tuple[np.ndarray, tuple[int, int] | None]], world: ToyWorld, rng) -> np.ndarray:
    """uint8 (T, size, size, 3) frames; each frame is (board of colour indices or GREY, bordered cell or None)."""
    palette = np.array(list(COLOURS.values()) + [OFF], dtype=np.float32)
    cell, b = world.size // world.grid, world.border
    out = []
    for board, marked in frames:
        img = palette[np.where(board == GREY, len(COLOURS), board)].repeat(cell, 0).repeat(cell, 1)
        if marked is not None:
            y, x = marked[0] * cell, marked[1] * cell
            img[y:y + cell, x:x + cell] = 255.0
            img[y + b:y + cell - b, x + b:x + cell - b] = palette[board[marked]]
        out.append(img)
    frames_arr = np.stack(out)
    if world.noise:
        frames_arr = frames_arr + rng.normal(0.0, world.noise, size=frames_arr.shape)
    return np.clip(frames_arr, 0, 255).astype(np.uint8)


def scenario_of(i: int, seed: int, world: ToyWorld) -> str:
    """Scenario of item i: drawn with the world's mix (its own stream, so the mix alone moves it)."""
    p = np.asarray(world.mix, dtype=float)
    return SCENARIOS[int(np.random.default_rng([seed, i, 1]).choice(len(SCENARIOS), p=p / p.sum()))]


def generate_split(out_dir, n_items: int, seed: int, world: ToyWorld | None = None, name: str = "items",
                   scenario: str | None = None) -> Path:
    """Write ``out_dir/videos/`` and ``out_dir/{name}.jsonl`` (Video-R1 records with evidence); return the jsonl.

    Items follow the world's mix, or are all of ``scenario`` when given (e.g. ``PRETRAIN_SCENARIO``).
    """
    if scenario is not None and scenario not in BUILDERS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {sorted(BUILDERS)}")
    world = world or ToyWorld()
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    out = Path(out_dir)
    records = []
    for i in range(n_items):
        kind = scenario or scenario_of(i, seed, world)
        rng = np.random.default_rng([seed, i])
        frames, item = BUILDERS[kind](rng, world)
        rel = f"videos/{name}_{i:05d}.mp4"
        encode_mp4(render(frames, world, rng), out / rel, world.fps)
        records.append({"problem_id": f"toy-{name}-{seed}-{i:05d}", "problem": item["problem"], "data_type": "video",
                        "problem_type": item["problem_type"], "options": item["options"],
                        "solution": f"<answer>{item['answer']}</answer>", "path": rel,
                        "data_source": f"toy/{kind}", "evidence": item["evidence"]})
    path = out / f"{name}.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
    logger.info("wrote %d toy items (%s) to %s", n_items, name, path)
    return path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Write one split of the toy world (Video-R1 records + evidence).")
    p.add_argument("--out", required=True, help="Output folder.")
    p.add_argument("--n", type=int, required=True, help="Number of items.")
    p.add_argument("--seed", type=int, required=True, help="Seed of the split (disjoint seeds, disjoint splits).")
    p.add_argument("--name", default="items", help="File stem of the JSONL and of the videos.")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(generate_split(a.out, a.n, a.seed, ToyWorld(), a.name))


if __name__ == "__main__":
    main()

