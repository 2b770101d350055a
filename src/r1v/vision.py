"""Video and image loading with one frame-sampling policy for training and evaluation.

The policy follows the Video-R1 evaluation/training setup (its forked qwen-vl-utils):

* ``nframes = floor_to_even(min(max(duration_s * fps, min_frames), max_frames, total_frames))``
* frame indices ``linspace(0, total_frames - 1, nframes).round()`` (uniform, both ends kept)
* every frame is resized with ``smart_resize`` to multiples of the patch factor
  (28 for Qwen2.5-VL: patch 14 x merge 2; 32 for Qwen3-VL: patch 16 x merge 2) inside a
  pixel budget. As in that fork, the per-frame cap is ``max(video_max_pixels,
  int(video_min_pixels * 1.05))``, so min == max == 128*28*28 gives 105,369 px, not 100,352.

Timestamps (seconds, ``index / native_fps``) of every sampled frame are kept because the
teacher refers to frames by time and Qwen3-VL renders them as text.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

logger = logging.getLogger(__name__)

# Frames are grouped in pairs by the vision tower's temporal patch (temporal_patch_size=2).
FRAME_FACTOR = 2
# The Video-R1 fork never lets the frame cap fall below 1.05 x min_pixels.
MIN_PIXELS_SLACK = 1.05
# Seek only when sampled frames are this far apart: below it, decoding through is cheaper.
SEEK_MIN_GAP = 250
# Image files a frame folder may hold (load_frame_folder).
FRAME_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class VisionConfig:
    """How videos and images are sampled and sized, shared by training, evaluation and the teacher."""

    fps: float = field(default=2.0, metadata={"help": "Frames sampled per second of video."})
    min_frames: int = field(default=4, metadata={"help": "Lower bound on sampled frames per video."})
    max_frames: int = field(default=16, metadata={"help": "Upper bound on sampled frames per video."})
    video_min_pixels: int = field(
        default=128 * 28 * 28, metadata={"help": "Minimum pixels per sampled video frame after resizing."}
    )
    video_max_pixels: int = field(
        default=128 * 28 * 28, metadata={"help": "Maximum pixels per sampled video frame after resizing."}
    )
    image_min_pixels: int = field(default=4 * 28 * 28, metadata={"help": "Minimum pixels of an image."})
    image_max_pixels: int = field(default=401408, metadata={"help": "Maximum pixels of an image (512*28*28)."})
    patch_factor: int = field(
        default=28,
        metadata={"help": "Resize granularity: patch size x spatial merge (28 Qwen2.5-VL, 32 Qwen3-VL)."},
    )
    backend: str = field(default="av", metadata={"help": "Video decoder: 'av' (PyAV) or 'decord'."})

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError(f"VisionConfig.fps must be > 0, got {self.fps}")
        if not FRAME_FACTOR <= self.min_frames <= self.max_frames:
            raise ValueError(
                f"VisionConfig needs {FRAME_FACTOR} <= min_frames <= max_frames, "
                f"got {self.min_frames}, {self.max_frames}"
            )
        if self.video_min_pixels > self.video_max_pixels or self.image_min_pixels > self.image_max_pixels:
            raise ValueError("VisionConfig min_pixels must not exceed max_pixels")
        if self.backend not in ("av", "decord"):
            raise ValueError(f"VisionConfig.backend must be 'av' or 'decord', got {self.backend!r}")

    @property
    def video_frame_max_pixels(self) -> int:
        """Effective per-frame pixel cap (Video-R1's ``max(max_pixels, 1.05 * min_pixels)``)."""
        return max(self.video_max_pixels, int(self.video_min_pixels * MIN_PIXELS_SLACK))


@dataclass
class VideoClip:
    """Sampled, resized frames of one video.

    frames: uint8 tensor (T, 3, H, W), T even, H and W multiples of the patch factor.
    timestamps: seconds of each sampled frame in the source video (len T).
    frame_indices: indices of the sampled frames in the source video (len T).
    sampled_fps: T / duration_s, the rate the model sees (drives Qwen2.5-VL's temporal M-RoPE).
    native_fps: frame rate of the source video; duration_s = total_frames / native_fps.
    """

    frames: torch.Tensor
    timestamps: list[float]
    sampled_fps: float
    duration_s: float
    path: str
    frame_indices: list[int] = field(default_factory=list)
    native_fps: float = 0.0
    total_frames: int = 0


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Round (height, width) to multiples of ``factor`` keeping the aspect ratio and the area in bounds."""
    if min(height, width) <= 0:
        raise ValueError(f"smart_resize got an empty size {height}x{width}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio of {height}x{width} exceeds 200")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def num_sampled_frames(duration_s: float, total_frames: int, cfg: VisionConfig) -> int:
    """Video-R1 frame count: floor_even(min(max(duration*fps, min_frames), max_frames, total_frames))."""
    n = min(max(duration_s * cfg.fps, cfg.min_frames), cfg.max_frames, total_frames)
    n = int(math.floor(n / FRAME_FACTOR) * FRAME_FACTOR)
    if n < FRAME_FACTOR:
        raise ValueError(f"video has {total_frames} frame(s); at least {FRAME_FACTOR} are needed")
    return n


def sample_frame_indices(total_frames: int, nframes: int) -> list[int]:
    """Uniform indices ``linspace(0, total-1, nframes).round()`` (first and last frame included)."""
    return [int(i) for i in np.linspace(0, total_frames - 1, nframes).round().astype(np.int64)]


def _probe_av(path: str) -> tuple[int, float]:
    """Return (total_frames, native_fps) of the first video stream, demuxing without decoding."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise ValueError("no frame rate in the video stream")
        total = stream.frames
        if total <= 0:  # some containers do not store a frame count: count packets instead
            total = sum(1 for p in container.demux(stream) if p.size > 0)
        return int(total), float(rate)


def _decode_av(path: str, wanted: list[int], seek_min_gap: int = SEEK_MIN_GAP) -> tuple[list[np.ndarray], int]:
    """Decode frames at the sorted indices ``wanted`` (RGB HxWx3); also return the frames decoded.

    Sparse samples of long videos (every gap >= ``seek_min_gap`` frames) seek to each frame's
    timestamp; otherwise, or when a seek cannot land exactly, frames are decoded in order.
    """
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if len(wanted) > 1 and min(np.diff(wanted)) >= seek_min_gap:
            frames = _decode_av_seeking(container, stream, wanted)
            if frames is not None:
                return frames, wanted[-1] + 1
            logger.info("%s: seeking did not land on exact frames; decoding sequentially", path)
            container.seek(0, stream=stream)
        want = set(wanted)
        out: dict[int, np.ndarray] = {}
        count = 0
        for idx, frame in enumerate(container.decode(stream)):
            count = idx + 1
            if idx in want:
                out[idx] = frame.to_ndarray(format="rgb24")
                if len(out) == len(want):
                    break
    return [out[i] for i in wanted if i in out], count


def _decode_av_seeking(container, stream, wanted: list[int]) -> list[np.ndarray] | None:
    """Frames at ``wanted`` by seeking to index / fps; None if any frame's pts is off (VFR, gaps)."""
    rate = float(stream.average_rate or 0)
    if not rate or not stream.time_base:
        return None
    ticks_per_frame = 1.0 / rate / float(stream.time_base)
    start = stream.start_time or 0
    out = []
    for idx in wanted:
        target = start + idx * ticks_per_frame
        container.seek(int(target), stream=stream, backward=True)
        found = None
        for frame in container.decode(stream):
            if frame.pts is None:
                return None
            if frame.pts >= target - ticks_per_frame / 2:
                found = frame
                break
        if found is None or found.pts > target + ticks_per_frame / 2:
            return None
        out.append(found.to_ndarray(format="rgb24"))
    return out


def _read_av(path: str, cfg: VisionConfig) -> tuple[np.ndarray, list[int], int, float]:
    """PyAV reader: (frames T x H x W x 3, indices, total_frames, native_fps)."""
    total, native_fps = _probe_av(path)
    indices = sample_frame_indices(total, num_sampled_frames(total / native_fps, total, cfg))
    frames, decoded = _decode_av(path, indices)
    if len(frames) < len(indices):
        # The container's frame count overstated the decodable frames: resample on the real count.
        logger.warning("%s: header says %d frames but %d decode; resampling", path, total, decoded)
        total = decoded
        indices = sample_frame_indices(total, num_sampled_frames(total / native_fps, total, cfg))
        frames, _ = _decode_av(path, indices)
    return np.stack(frames), indices, total, native_fps


def _read_decord(path: str, cfg: VisionConfig) -> tuple[np.ndarray, list[int], int, float]:
    """decord reader (optional dependency): same outputs as ``_read_av``."""
    try:
        import decord
    except ImportError as exc:
        raise ImportError("VisionConfig.backend='decord' needs `pip install decord`") from exc
    reader = decord.VideoReader(path)
    total, native_fps = len(reader), float(reader.get_avg_fps())
    indices = sample_frame_indices(total, num_sampled_frames(total / native_fps, total, cfg))
    return reader.get_batch(indices).asnumpy(), indices, total, native_fps


def load_video(path: str | Path, cfg: VisionConfig | None = None) -> VideoClip:
    """Decode and sample a video with the shared policy; errors name the path."""
    cfg = cfg or VisionConfig()
    path = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"video not found: {path}")
    reader = _read_av if cfg.backend == "av" else _read_decord
    try:
        raw, indices, total, native_fps = reader(path, cfg)
    except ImportError:
        raise
    except Exception as exc:  # decoder errors are opaque; re-raise with the file named
        raise ValueError(f"cannot decode video {path}: {exc}") from exc
    video = torch.from_numpy(raw).permute(0, 3, 1, 2).contiguous()  # (T, 3, H, W)
    h, w = smart_resize(
        video.shape[2], video.shape[3], cfg.patch_factor, cfg.video_min_pixels, cfg.video_frame_max_pixels
    )
    video = TF.resize(video, [h, w], interpolation=InterpolationMode.BICUBIC, antialias=True)
    duration = total / native_fps
    return VideoClip(
        frames=video,
        timestamps=[i / native_fps for i in indices],
        sampled_fps=len(indices) / duration,
        duration_s=duration,
        path=path,
        frame_indices=indices,
        native_fps=native_fps,
        total_frames=total,
    )


def load_frames_at(path: str | Path, times_s: list[float], cfg: VisionConfig | None = None) -> VideoClip:
    """Frames of a video nearest to the given times (seconds), resized like :func:`load_video`.

    Used by the teacher's tools (a time range, the student's own frames re-decoded at
    full policy size). Times are mapped to frame ``round(t * native_fps)``, clamped to the
    video; duplicates collapse, so the clip may hold fewer frames than times. Errors name
    the path.
    """
    cfg = cfg or VisionConfig()
    path = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"video not found: {path}")
    if not times_s or not all(math.isfinite(t) and t >= 0 for t in times_s):
        raise ValueError(f"times must be a non-empty list of finite seconds >= 0, got {times_s!r}")
    try:
        total, native_fps = _probe_av(path)
        wanted = sorted({min(total - 1, int(round(t * native_fps))) for t in times_s})
        raw, decoded = _decode_av(path, wanted)
    except Exception as exc:  # decoder errors are opaque; re-raise with the file named
        raise ValueError(f"cannot decode video {path}: {exc}") from exc
    if not raw:
        raise ValueError(f"cannot decode video {path}: no frame decoded at {times_s}")
    wanted = wanted[: len(raw)]  # a header that overstated the frame count: keep what decoded
    video = torch.from_numpy(np.stack(raw)).permute(0, 3, 1, 2).contiguous()
    h, w = smart_resize(video.shape[2], video.shape[3], cfg.patch_factor, cfg.video_min_pixels,
                        cfg.video_frame_max_pixels)
    video = TF.resize(video, [h, w], interpolation=InterpolationMode.BICUBIC, antialias=True)
    duration = total / native_fps
    return VideoClip(frames=video, timestamps=[i / native_fps for i in wanted], sampled_fps=len(wanted) / duration,
                     duration_s=duration, path=path, frame_indices=wanted, native_fps=native_fps, total_frames=total)


def load_frame_folder(path: str | Path, fps: float, cfg: VisionConfig | None = None) -> VideoClip:
    """A folder of frame images (MVBench's TVQA clips, ``fps`` per second) sampled like a video.

    Same policy as :func:`load_video`: frame count, uniform indices, one resize per clip. Frames
    are ordered by natural sort of their file names (``2.jpg`` before ``10.jpg``); files without
    an image extension are ignored. Errors name the folder.
    """
    cfg = cfg or VisionConfig()
    path = str(path)
    if not Path(path).is_dir():
        raise FileNotFoundError(f"frame folder not found: {path}")
    natural = lambda f: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", f)]  # noqa: E731
    files = sorted((f for f in os.listdir(path) if f.lower().endswith(FRAME_EXTS)), key=natural)
    if not files:
        raise ValueError(f"no frame images in {path}")
    total = len(files)
    indices = sample_frame_indices(total, num_sampled_frames(total / fps, total, cfg))
    frames = []
    for i in indices:
        with Image.open(os.path.join(path, files[i])) as image:
            frames.append(np.asarray(image.convert("RGB")))
    video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # (T, 3, H, W) uint8
    h, w = smart_resize(video.shape[2], video.shape[3], cfg.patch_factor, cfg.video_min_pixels,
                        cfg.video_frame_max_pixels)
    video = TF.resize(video, [h, w], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return VideoClip(frames=video.contiguous(), timestamps=[i / fps for i in indices],
                     sampled_fps=len(indices) * fps / total, duration_s=total / fps, path=path,
                     frame_indices=indices, native_fps=fps, total_frames=total)


def load_image(path: str | Path, cfg: VisionConfig | None = None) -> Image.Image:
    """Open an image as RGB, resized to multiples of the patch factor within the image pixel budget."""
    cfg = cfg or VisionConfig()
    path = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            image = img.convert("RGB")
    except Exception as exc:  # PIL raises several unrelated types for broken files
        raise ValueError(f"cannot decode image {path}: {exc}") from exc
    return resize_image(image, cfg)


def resize_image(image: Image.Image, cfg: VisionConfig) -> Image.Image:
    """Resize a PIL image with ``smart_resize`` under the image pixel budget (bicubic)."""
    h, w = smart_resize(image.height, image.width, cfg.patch_factor, cfg.image_min_pixels, cfg.image_max_pixels)
    if (h, w) == (image.height, image.width):
        return image
    return image.resize((w, h), Image.Resampling.BICUBIC)
