"""Turn user prompts plus decoded visuals into model inputs for Qwen2.5-VL / Qwen3-VL.

One code path for the trainer, evaluation and dummy generate calls:

1. each prompt becomes one user turn ``[visual, *extra_images, text]`` rendered with the
   processor's chat template (``tokenize=False``, generation prompt appended);
2. the processor is called with the already-sampled frames plus ``VideoMetadata`` (native fps and
   sampled frame indices), so Qwen2.5-VL's ``second_per_grid_ts`` = 2 / sampled_fps and Qwen3-VL's
   timestamp text are right, and ``do_sample_frames=False`` so frames are not re-sampled;
3. resizing happens once, on our side: videos arrive sized by ``r1v.vision.load_video`` and images
   are sized here with the image budget, so the processor runs with ``do_resize=False``.

The batch is left padded and carries ``mm_token_type_ids`` (0 text, 1 image, 2 video), which
every forward pass of these models needs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from PIL import Image
from transformers import BatchFeature
from transformers.video_utils import VideoMetadata

from r1v.vision import VideoClip, VisionConfig, resize_image

logger = logging.getLogger(__name__)

VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")

Visual = VideoClip | Image.Image | None


def vision_token_ids(processor_or_tokenizer) -> list[int]:
    """Ids of the four vision special tokens (start, end, image pad, video pad).

    A random or drifting policy can sample them; generating them breaks the next forward pass,
    so callers suppress them (e.g. ``generate(suppress_tokens=vision_token_ids(processor))``).
    """
    tokenizer = getattr(processor_or_tokenizer, "tokenizer", processor_or_tokenizer)
    ids = tokenizer.convert_tokens_to_ids(list(VISION_TOKENS))
    unk = getattr(tokenizer, "unk_token_id", None)
    missing = [tok for tok, i in zip(VISION_TOKENS, ids) if i is None or (unk is not None and i == unk)]
    if missing:
        raise ValueError(f"tokenizer lacks vision special tokens {missing}")
    return [int(i) for i in ids]


def make_dummy_visual(cfg: VisionConfig | None = None) -> VideoClip:
    """A deterministic 4-frame clip of (2*factor)^2 pixels (56x56 for Qwen2.5-VL, 64x64 for Qwen3-VL).

    Used for 1-token dummy ``generate`` calls that must still run the vision tower (so every
    distributed rank enters the same collective operations).
    """
    cfg = cfg or VisionConfig()
    side, n = 2 * cfg.patch_factor, 4
    ramp = torch.linspace(0, 255, side).round().to(torch.uint8)
    frames = torch.empty(n, 3, side, side, dtype=torch.uint8)
    for t in range(n):
        frames[t, 0] = ramp[None, :].expand(side, side)
        frames[t, 1] = ramp[:, None].expand(side, side)
        frames[t, 2] = 64 * t
    duration = n / cfg.fps
    return VideoClip(
        frames=frames,
        timestamps=[t / cfg.fps for t in range(n)],
        sampled_fps=cfg.fps,
        duration_s=duration,
        path="<dummy>",
        frame_indices=list(range(n)),
        native_fps=cfg.fps,
        total_frames=n,
    )


def _metadata(clip: VideoClip) -> VideoMetadata:
    """Transformers metadata whose ``sampled_fps`` equals ``clip.sampled_fps``.

    Clips from ``load_video`` carry the source frame indices and fps. A clip built by hand without
    them is described as its own source (fps = sampled_fps, indices = timestamps * fps), which
    keeps both ``second_per_grid_ts`` and Qwen3-VL's timestamp text right.
    """
    if clip.sampled_fps <= 0:
        raise ValueError(f"video clip {clip.path}: sampled_fps must be > 0, got {clip.sampled_fps}")
    if clip.frame_indices and clip.native_fps > 0 and clip.total_frames > 0:
        fps, indices, total = clip.native_fps, list(clip.frame_indices), clip.total_frames
    else:
        if len(clip.timestamps) != clip.frames.shape[0]:
            raise ValueError(f"video {clip.path}: {clip.frames.shape[0]} frames but {len(clip.timestamps)} timestamps")
        fps, total = clip.sampled_fps, int(clip.frames.shape[0])
        indices = [t * fps for t in clip.timestamps]
    return VideoMetadata(
        total_num_frames=total,
        fps=fps,
        width=int(clip.frames.shape[-1]),
        height=int(clip.frames.shape[-2]),
        duration=clip.duration_s,
        video_backend="r1v",
        frames_indices=indices,
    )


def _check_clip(clip: VideoClip, factor: int) -> None:
    """Frames must be (T, 3, H, W) uint8 with H, W multiples of the patch factor (no resize happens here)."""
    f = clip.frames
    if f.ndim != 4 or f.shape[1] != 3:
        raise ValueError(f"video {clip.path}: frames must be (T, 3, H, W), got {tuple(f.shape)}")
    if f.shape[-1] % factor or f.shape[-2] % factor:
        raise ValueError(
            f"video {clip.path}: frame size {f.shape[-2]}x{f.shape[-1]} is not a multiple of {factor}; "
            "load it with r1v.vision.load_video using the model's patch factor"
        )
    if clip.frame_indices and len(clip.frame_indices) != f.shape[0]:
        raise ValueError(f"video {clip.path}: {f.shape[0]} frames but {len(clip.frame_indices)} frame indices")


def patch_factor_of(processor) -> int:
    """Resize granularity of a processor: patch size x spatial merge (28 Qwen2.5-VL, 32 Qwen3-VL).

    Use it for ``VisionConfig.patch_factor`` so ``load_video`` sizes frames for this model.
    """
    vp = processor.video_processor
    return int(vp.patch_size * vp.merge_size)


def image_config_from_processor(processor) -> VisionConfig:
    """The image pixel budget saved with the processor, as a VisionConfig."""
    ip = processor.image_processor
    size = ip.size
    lo = size["shortest_edge"] if "shortest_edge" in size else size["min_pixels"]
    hi = size["longest_edge"] if "longest_edge" in size else size["max_pixels"]
    return VisionConfig(image_min_pixels=lo, image_max_pixels=hi, patch_factor=ip.patch_size * ip.merge_size)


def _user_turn(text: str, visual: Visual, n_extra: int) -> list[dict]:
    content: list[dict] = []
    if isinstance(visual, VideoClip):
        content.append({"type": "video"})
    elif isinstance(visual, Image.Image):
        content.append({"type": "image"})
    content.extend({"type": "image"} for _ in range(n_extra))
    content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]


def encode_prompts(
    processor,
    prompt_texts: Sequence[str],
    visuals: Sequence[Visual],
    extra_images: Sequence[Sequence[Image.Image] | None] | None = None,
    vision_cfg: VisionConfig | None = None,
) -> BatchFeature:
    """Encode a batch of (user text, visual) prompts; the chat template is applied here.

    Args:
        processor: a loaded Qwen2.5-VL or Qwen3-VL processor.
        prompt_texts: B user texts (the visual comes first in the turn, then the text).
        visuals: B items, each a ``VideoClip`` (from ``load_video``), a PIL image or None (text only).
            Videos and images may be mixed in one batch.
        extra_images: optional B lists of PIL images appended after the main visual (evidence crops).
        vision_cfg: image pixel budget for images; defaults to the budget saved with the processor.

    Returns:
        BatchFeature with ``input_ids`` / ``attention_mask`` / ``mm_token_type_ids`` (B, L) left
        padded, plus ``pixel_values_videos`` (sum patches, D), ``video_grid_thw`` (n_videos, 3) and,
        for Qwen2.5-VL, ``second_per_grid_ts`` (n_videos,) when videos are present, and
        ``pixel_values`` / ``image_grid_thw`` when images are present.
    """
    n = len(prompt_texts)
    if len(visuals) != n:
        raise ValueError(f"encode_prompts: {n} prompts but {len(visuals)} visuals")
    if extra_images is not None and len(extra_images) != n:
        raise ValueError(f"encode_prompts: {n} prompts but {len(extra_images)} extra_images lists")
    factor = patch_factor_of(processor)
    image_cfg = vision_cfg or image_config_from_processor(processor)
    if image_cfg.patch_factor != factor:
        raise ValueError(
            f"vision_cfg.patch_factor is {image_cfg.patch_factor} but this processor needs {factor} "
            "(set it with r1v.inputs.patch_factor_of(processor))"
        )

    texts, images, videos, metadata = [], [], [], []
    for i, (text, visual) in enumerate(zip(prompt_texts, visuals)):
        extras = list(extra_images[i] or []) if extra_images is not None else []
        if visual is not None and not isinstance(visual, VideoClip | Image.Image):
            raise TypeError(f"encode_prompts: visual {i} is {type(visual).__name__}, not VideoClip/PIL image/None")
        if isinstance(visual, VideoClip):
            _check_clip(visual, factor)
            videos.append(visual.frames)
            metadata.append(_metadata(visual))
        elif isinstance(visual, Image.Image):
            images.append(resize_image(visual.convert("RGB"), image_cfg))
        images.extend(resize_image(im.convert("RGB"), image_cfg) for im in extras)
        turn = _user_turn(text, visual, len(extras))
        texts.append(processor.apply_chat_template(turn, tokenize=False, add_generation_prompt=True))

    kwargs = {}
    if videos:
        # cap_pixels_per_frame only silences 5.x's resize-policy warning: nothing is resized here.
        kwargs.update(videos=videos, video_metadata=metadata, do_sample_frames=False, cap_pixels_per_frame=True)
    if images:
        kwargs["images"] = images
    batch = processor(
        text=texts,
        padding=True,
        padding_side="left",
        return_tensors="pt",
        return_mm_token_type_ids=True,
        do_resize=False,  # frames/images were sized above with the shared policy
        **kwargs,
    )
    if "mm_token_type_ids" not in batch:
        raise RuntimeError("processor did not return mm_token_type_ids; it is needed in every forward")
    return batch
