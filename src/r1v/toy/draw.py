"""Numpy drawing and encoding for the synthetic video QA set.

A scene is a list of `Sprite`s (filled shapes) and `TextSprite`s (block glyphs), each
scheduled in *frame indices*: frame i is shown during [i / fps, (i + 1) / fps) seconds.
Keeping schedules in frames makes every answer exact (no rounding of times), and the
question builders in `r1v.toy.synthetic` convert frames to seconds only for the text and
the evidence annotations.

Contracts:
- `render_frames(...)` -> uint8 array (T, H, W, 3), RGB, background `BACKGROUND`.
- `encode_mp4(frames, path, fps)` writes H.264 (libx264; MPEG-4 Part 2 where the FFmpeg
  build lacks x264), yuv420p, so W and H must be even.
- Colours come from `PALETTE`; they are far apart in RGB so that the 4:2:0 chroma
  subsampling of the encoder cannot turn one palette colour into another at a
  shape's interior (tests classify decoded pixels by nearest palette colour).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import av
import numpy as np

logger = logging.getLogger(__name__)

BACKGROUND = (24, 24, 24)
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (225, 30, 30),
    "green": (30, 200, 40),
    "blue": (40, 70, 235),
    "yellow": (235, 225, 30),
    "magenta": (225, 40, 220),
    "cyan": (30, 215, 225),
}
TEXT_COLOR = (245, 245, 245)
SHAPES = ("circle", "square", "triangle")

# 5x7 block glyphs: one int per row, bit 4 = leftmost column.
GLYPHS: dict[str, tuple[int, ...]] = {
    "0": (0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E), "1": (0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E),
    "2": (0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F), "3": (0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E),
    "4": (0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02), "5": (0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E),
    "6": (0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E), "7": (0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08),
    "8": (0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E), "9": (0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C),
    "A": (0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11), "B": (0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E),
    "C": (0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E), "D": (0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C),
    "E": (0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F), "F": (0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10),
    "G": (0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F), "H": (0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11),
    "I": (0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E), "J": (0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C),
    "K": (0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11), "L": (0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F),
    "M": (0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11), "N": (0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11),
    "O": (0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E), "P": (0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10),
    "Q": (0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D), "R": (0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11),
    "S": (0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E), "T": (0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04),
    "U": (0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E), "V": (0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04),
    "W": (0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A), "X": (0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11),
    "Y": (0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04), "Z": (0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F),
}
GLYPH_W, GLYPH_H = 5, 7
# Characters used for OCR text: look-alike pairs (0/O, 1/I, 5/S, 8/B, 2/Z) are left out
# so the gold text is unambiguous even at low resolution.
OCR_ALPHABET = "34679ACDEFGHJKLMNPRTUVWXY"


@dataclass
class Sprite:
    """A filled shape. Frames are indices; `visible` holds half-open [f0, f1) ranges.

    Position is `start` before `move[0]`, `end` from `move[1]` on, linear in between
    (pixel coordinates of the centre). `recolor` lists (frame, colour name) changes.
    """

    shape: str
    color: str
    radius: int
    start: tuple[float, float]
    visible: list[tuple[int, int]]
    end: tuple[float, float] | None = None
    move: tuple[int, int] = (0, 0)
    recolor: list[tuple[int, str]] = field(default_factory=list)

    def center_at(self, f: int) -> tuple[float, float]:
        """Centre (x, y) in pixels at frame f."""
        if self.end is None or f <= self.move[0]:
            return self.start
        if f >= self.move[1]:
            return self.end
        a = (f - self.move[0]) / (self.move[1] - self.move[0])
        return (self.start[0] + a * (self.end[0] - self.start[0]),
                self.start[1] + a * (self.end[1] - self.start[1]))

    def color_at(self, f: int) -> str:
        """Palette name of the colour shown at frame f."""
        color = self.color
        for frame, new in sorted(self.recolor):
            if f >= frame:
                color = new
        return color

    def visible_at(self, f: int) -> bool:
        return any(f0 <= f < f1 for f0, f1 in self.visible)


@dataclass
class TextSprite:
    """Block-glyph text with its top-left corner at (x, y) pixels, glyphs scaled by `scale`."""

    text: str
    x: int
    y: int
    scale: int
    visible: list[tuple[int, int]]

    def size(self) -> tuple[int, int]:
        """(width, height) in pixels of the rendered text."""
        return text_size(self.text, self.scale)


def text_size(text: str, scale: int) -> tuple[int, int]:
    """Pixel (width, height) of `text`: glyph cells are 5 wide plus 1 column of spacing."""
    return (len(text) * (GLYPH_W + 1) - 1) * scale, GLYPH_H * scale


def shape_mask(shape: str, cx: float, cy: float, r: float, h: int, w: int) -> np.ndarray:
    """Boolean (h, w) mask of a filled circle / square / upward triangle centred at (cx, cy)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if shape == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    if shape == "square":
        half = 0.85 * r  # a slightly smaller square keeps the three shapes of similar area
        return (np.abs(xx - cx) <= half) & (np.abs(yy - cy) <= half)
    if shape == "triangle":
        top, bottom = cy - r, cy + r
        return (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= (yy - top) / 2.0 * 1.15)
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def draw_text(img: np.ndarray, text: str, x: int, y: int, scale: int,
              color: Sequence[int] = TEXT_COLOR) -> None:
    """Draw `text` in block glyphs into img (H, W, 3) in place; raises on unknown characters."""
    for i, ch in enumerate(text):
        if ch == " ":
            continue
        if ch not in GLYPHS:
            raise ValueError(f"no glyph for character {ch!r} in {text!r}")
        bits = np.array([[(row >> (GLYPH_W - 1 - c)) & 1 for c in range(GLYPH_W)]
                         for row in GLYPHS[ch]], dtype=bool)
        block = np.kron(bits, np.ones((scale, scale), dtype=bool))
        x0 = x + i * (GLYPH_W + 1) * scale
        region = img[y:y + block.shape[0], x0:x0 + block.shape[1]]
        if region.shape[:2] != block.shape:
            raise ValueError(f"text {text!r} at ({x}, {y}) scale {scale} does not fit the image")
        region[block] = color


def render_frame(f: int, sprites: Sequence[Sprite], texts: Sequence[TextSprite],
                 size: tuple[int, int]) -> np.ndarray:
    """One RGB frame (H, W, 3) uint8 at frame index f; later sprites paint over earlier ones."""
    w, h = size
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[:] = BACKGROUND
    for s in sprites:
        if s.visible_at(f):
            cx, cy = s.center_at(f)
            img[shape_mask(s.shape, cx, cy, s.radius, h, w)] = PALETTE[s.color_at(f)]
    for t in texts:
        if any(f0 <= f < f1 for f0, f1 in t.visible):
            draw_text(img, t.text, t.x, t.y, t.scale)
    return img


def render_frames(sprites: Sequence[Sprite], texts: Sequence[TextSprite], n_frames: int,
                  size: tuple[int, int]) -> np.ndarray:
    """All frames of a scene: uint8 (n_frames, H, W, 3), size = (W, H)."""
    return np.stack([render_frame(f, sprites, texts, size) for f in range(n_frames)])


def pick_codec() -> str:
    """libx264 when this FFmpeg build has it, else the always-present MPEG-4 Part 2 encoder."""
    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except av.codec.codec.UnknownCodecError:
        logger.info("libx264 not available in this PyAV build; encoding with mpeg4")
        return "mpeg4"


def encode_mp4(frames: np.ndarray, path: Path, fps: int, codec: str | None = None) -> Path:
    """Encode RGB frames (T, H, W, 3) uint8 to an mp4 at `fps` (constant frame rate).

    High quality settings (x264 crf 12 / mpeg4 qscale 2) keep the flat palette colours
    recoverable after decoding. Raises ValueError for odd sizes (yuv420p needs even W, H).
    """
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"{path}: yuv420p needs even width/height, got {w}x{h}")
    codec = codec or pick_codec()
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "veryfast"}
        else:
            stream.options = {"qscale": "2"}
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():  # flush delayed frames
            container.mux(packet)
    return path


def classify_pixels(img: np.ndarray, max_dist: float = 70.0) -> np.ndarray:
    """Nearest palette colour index per pixel of img (H, W, 3); -1 for background/far pixels.

    Index order is `list(PALETTE)`. Used to read decoded frames back (tests, sanity checks).
    """
    cols = np.array(list(PALETTE.values()), dtype=np.float32)  # (K, 3)
    d = np.linalg.norm(img[..., None, :].astype(np.float32) - cols, axis=-1)  # (H, W, K)
    idx = d.argmin(-1)
    idx[d.min(-1) > max_dist] = -1
    return idx


# ----------------------------------------------------------------------------- scene layout
# Shared by the question builders in r1v.toy.synthetic: clip lengths, object picking and
# placement, and relative boxes for evidence regions.
@dataclass(frozen=True)
class GenConfig:
    """Drawing parameters shared by all builders; size is (W, H) in pixels, both even."""

    fps: int = 8
    size: tuple[int, int] = (112, 84)
    duration_s: tuple[float, float] = (2.0, 4.0)
    radius: int = 7


def n_frames_for(rng: np.random.Generator, cfg: GenConfig) -> int:
    """A clip length in frames, drawn uniformly from cfg.duration_s seconds."""
    lo, hi = cfg.duration_s
    return int(round(rng.uniform(lo, hi) * cfg.fps))


def seconds(f: int, cfg: GenConfig) -> float:
    """Start time in seconds of frame index f (frame f is shown during [f/fps, (f+1)/fps))."""
    return round(f / cfg.fps, 3)


def pick_objects(rng: np.random.Generator, n: int, shapes=SHAPES, colors=tuple(PALETTE)) -> list[tuple[str, str]]:
    """n (shape, colour) pairs with distinct colours, so "the red circle" names one object."""
    cols = rng.permutation(list(colors))[:n]
    return [(str(rng.choice(list(shapes))), str(c)) for c in cols]


def place_centers(rng: np.random.Generator, cfg: GenConfig, n: int, taken=()) -> list[tuple[int, int]]:
    """n random centres, none closer than 3 radii to each other or to `taken`."""
    w, h = cfg.size
    m = cfg.radius + 2
    pts: list[tuple[int, int]] = list(taken)
    for _ in range(500):
        p = (int(rng.integers(m, w - m)), int(rng.integers(m, h - m)))
        if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 >= (3 * cfg.radius) ** 2 for q in pts):
            pts.append(p)
            if len(pts) == len(taken) + n:
                return pts[len(taken):]
    raise RuntimeError(f"could not place {n} shapes in a {w}x{h} frame")


def rel_box(points, cfg: GenConfig, pad: float) -> list[float]:
    """Relative box around pixel points, padded by `pad` pixels, clipped to [0, 1]."""
    w, h = cfg.size
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    box = [(min(xs) - pad) / w, (min(ys) - pad) / h, (max(xs) + pad) / w, (max(ys) + pad) / h]
    return [round(min(max(v, 0.0), 1.0), 3) for v in box]


def always(n: int) -> list[tuple[int, int]]:
    """Visibility schedule of a sprite shown in all n frames."""
    return [(0, n)]
