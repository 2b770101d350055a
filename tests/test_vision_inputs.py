"""Frame sampling, video/image loading and prompt encoding (r1v.vision, r1v.inputs)."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from PIL import Image
from qwen_vl_utils import vision_process as qvu
from transformers import AutoProcessor

from r1v.inputs import encode_prompts, make_dummy_visual, patch_factor_of, vision_token_ids
from r1v import vision
from r1v.toy.tiny import build_tiny_checkpoint
from r1v.vision import (
    VideoClip,
    VisionConfig,
    load_image,
    load_video,
    num_sampled_frames,
    sample_frame_indices,
    smart_resize,
)

SMALL = dict(video_min_pixels=28 * 28 * 4, video_max_pixels=56 * 84)


def write_video(path, n_frames: int, fps: int, width: int = 64, height: int = 48, gop: int = 250) -> str:
    """H.264 (crf 0) video whose frame i encodes i in its colour: R = 8 + 8*(i%30), G = 40 + 50*(i//30).

    The RGB -> YUV 4:2:0 round trip moves flat colours by up to 2 levels, well inside a step of 8.
    """
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "0"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        for i in range(n_frames):
            rgb = np.zeros((height, width, 3), np.uint8)
            rgb[..., 0], rgb[..., 1], rgb[..., 2] = 8 + 8 * (i % 30), 40 + 50 * (i // 30), 128
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def decoded_index(frame: torch.Tensor) -> int:
    r, g = frame[0].float().mean().item(), frame[1].float().mean().item()
    return round((r - 8) / 8) + 30 * round((g - 40) / 50)


@pytest.fixture(scope="module")
def processors(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {
        arch: AutoProcessor.from_pretrained(build_tiny_checkpoint(root / arch, arch))
        for arch in ("qwen2_5_vl", "qwen3_vl")
    }


@pytest.mark.parametrize("total", [2, 3, 5, 10, 16, 30, 33, 100, 1000])
@pytest.mark.parametrize("native_fps", [10.0, 29.97])
def test_frame_count_matches_qwen_vl_utils(total, native_fps):
    cfg = VisionConfig()
    ref = qvu.smart_nframes({"fps": 2.0, "min_frames": 4, "max_frames": 16}, total_frames=total, video_fps=native_fps)
    assert num_sampled_frames(total / native_fps, total, cfg) == ref


def test_frame_count_too_short_video_raises():
    with pytest.raises(ValueError, match="1 frame"):
        num_sampled_frames(0.1, 1, VisionConfig())


@pytest.mark.parametrize("size", [(480, 640), (720, 1280), (48, 64), (1080, 1920), (300, 301)])
def test_smart_resize_matches_qwen_vl_utils(size):
    cfg = VisionConfig()
    ours = smart_resize(*size, 28, cfg.video_min_pixels, cfg.video_frame_max_pixels)
    assert ours == qvu.smart_resize(*size, 28, cfg.video_min_pixels, cfg.video_frame_max_pixels)
    assert ours[0] % 28 == 0 and ours[1] % 28 == 0


def test_video_r1_effective_frame_size():
    cfg = VisionConfig()
    assert cfg.video_frame_max_pixels == 105369
    assert smart_resize(480, 640, 28, cfg.video_min_pixels, cfg.video_frame_max_pixels) == (280, 364)
    assert smart_resize(720, 1280, 28, cfg.video_min_pixels, cfg.video_frame_max_pixels) == (224, 420)


@pytest.mark.parametrize(
    "n_frames,expected",
    [(3, [0, 2]), (10, [0, 3, 6, 9]), (30, [0, 6, 12, 17, 23, 29]), (100, sample_frame_indices(100, 16))],
)
def test_load_video_samples_policy_frames(tmp_path, n_frames, expected):
    path = write_video(tmp_path / f"v{n_frames}.mp4", n_frames, fps=10)
    clip = load_video(path, VisionConfig(**SMALL))
    assert clip.frame_indices == expected
    assert clip.timestamps == pytest.approx([i / 10 for i in expected])
    assert clip.duration_s == pytest.approx(n_frames / 10)
    assert clip.sampled_fps == pytest.approx(len(expected) / (n_frames / 10))
    assert clip.frames.dtype == torch.uint8 and clip.frames.shape[:2] == (len(expected), 3)
    assert clip.frames.shape[2] % 28 == 0 and clip.frames.shape[3] % 28 == 0
    assert [decoded_index(f) for f in clip.frames] == expected


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_seeking_decoder_returns_the_same_frames(tmp_path, ext):
    path = write_video(tmp_path / f"long.{ext}", 100, fps=10, gop=7)
    wanted = [0, 13, 27, 40, 54, 67, 81, 99]
    with av.open(path) as container:
        frames = vision._decode_av_seeking(container, container.streams.video[0], wanted)
    assert frames is not None  # every seek landed on its exact frame
    assert [decoded_index(torch.from_numpy(f).permute(2, 0, 1)) for f in frames] == wanted
    sequential, count = vision._decode_av(path, wanted, seek_min_gap=10**9)
    assert count == 100 and all(np.array_equal(a, b) for a, b in zip(frames, sequential))
    assert all(np.array_equal(a, b) for a, b in zip(vision._decode_av(path, wanted, seek_min_gap=1)[0], frames))


def test_load_video_without_frame_count_in_header(tmp_path):
    path = write_video(tmp_path / "v.mkv", 30, fps=10)  # Matroska stores no frame count
    with av.open(path) as container:
        assert container.streams.video[0].frames == 0
    clip = load_video(path, VisionConfig(**SMALL))
    assert clip.total_frames == 30 and clip.frame_indices == [0, 6, 12, 17, 23, 29]


def test_load_video_patch_factor_32(tmp_path):
    clip = load_video(write_video(tmp_path / "v.mp4", 10, fps=10), VisionConfig(patch_factor=32, **SMALL))
    assert clip.frames.shape[2] % 32 == 0 and clip.frames.shape[3] % 32 == 0


def test_load_video_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        load_video(missing)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    with pytest.raises(ValueError, match="broken.mp4"):
        load_video(broken)


def test_decord_backend_missing_is_a_clear_error(tmp_path):
    try:
        import decord
    except ImportError:
        decord = None
    if decord is not None:
        pytest.skip("decord is installed")
    path = write_video(tmp_path / "v.mp4", 10, fps=10)
    with pytest.raises(ImportError, match="backend='decord'"):
        load_video(path, VisionConfig(backend="decord"))


def test_hand_built_clip_metadata(processors):
    """A clip without source indices is described by its timestamps (Qwen3-VL text) and sampled fps."""
    frames = make_dummy_visual(VisionConfig(patch_factor=32)).frames
    clip = VideoClip(frames, [1.0, 1.5, 2.0, 2.5], sampled_fps=2.0, duration_s=2.0, path="<hand>")
    proc = processors["qwen3_vl"]
    text = proc.tokenizer.decode(encode_prompts(proc, ["q"], [clip])["input_ids"][0])
    assert "<1.2 seconds>" in text and "<2.2 seconds>" in text
    clip28 = VideoClip(make_dummy_visual().frames, [1.0, 1.5, 2.0, 2.5], 2.0, 2.0, "<hand>")
    assert encode_prompts(processors["qwen2_5_vl"], ["q"], [clip28])["second_per_grid_ts"].tolist() == [1.0]


def test_load_image(tmp_path):
    path = tmp_path / "img.png"
    Image.new("RGB", (300, 200), (1, 2, 3)).save(path)
    image = load_image(path, VisionConfig(image_max_pixels=28 * 28 * 16))
    assert image.width % 28 == 0 and image.height % 28 == 0 and image.width * image.height <= 28 * 28 * 16
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")


def test_vision_config_validation():
    with pytest.raises(ValueError, match="backend"):
        VisionConfig(backend="opencv")
    with pytest.raises(ValueError, match="min_frames"):
        VisionConfig(min_frames=8, max_frames=4)


def test_encode_video_batch_of_different_lengths(tmp_path, processors):
    proc = processors["qwen2_5_vl"]
    cfg = VisionConfig(**SMALL)
    short = load_video(write_video(tmp_path / "a.mp4", 10, fps=10), cfg)
    long = load_video(write_video(tmp_path / "b.mp4", 100, fps=10), cfg)
    batch = encode_prompts(proc, ["How many red circles?", "What moves first?"], [short, long])
    thw = batch["video_grid_thw"]
    h, w = short.frames.shape[2:]
    # No resize inside the processor: the grid is exactly our frames / (2, 14, 14).
    assert thw.tolist() == [[2, h // 14, w // 14], [8, h // 14, w // 14]]
    assert batch["second_per_grid_ts"].tolist() == pytest.approx([2 / short.sampled_fps, 2 / long.sampled_fps])
    n_video_tokens = (batch["mm_token_type_ids"] == 2).sum(dim=1)
    assert n_video_tokens.tolist() == (thw.prod(dim=1) // 4).tolist()
    mask = batch["attention_mask"]
    assert mask[:, -1].all() and mask[0, 0] == 0  # left padded: the shorter prompt starts with padding
    video_id = vision_token_ids(proc)[3]
    assert ((batch["input_ids"] == video_id) == (batch["mm_token_type_ids"] == 2)).all()
    text = proc.tokenizer.decode(batch["input_ids"][0], skip_special_tokens=False)
    assert text.endswith("<|vision_end|>How many red circles?<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("arch,factor", [("qwen2_5_vl", 28), ("qwen3_vl", 32)])
def test_encode_mixed_images_videos_and_extra_images(processors, arch, factor):
    proc = processors[arch]
    clip = make_dummy_visual(VisionConfig(patch_factor=factor))
    image = Image.new("RGB", (100, 70), (200, 10, 10))
    crops = [Image.new("RGB", (40, 30), (0, 200, 0)), Image.new("RGB", (30, 30), (0, 0, 200))]
    batch = encode_prompts(proc, ["q1", "q2", "q3"], [image, clip, None], extra_images=[None, crops, None])
    assert batch["image_grid_thw"].shape[0] == 3 and batch["video_grid_thw"].shape[0] == 1
    per_row = (batch["mm_token_type_ids"] == 1).sum(dim=1).tolist()
    tokens = (batch["image_grid_thw"].prod(dim=1) // 4).tolist()
    assert per_row == [tokens[0], tokens[1] + tokens[2], 0]
    assert (batch["mm_token_type_ids"][2] == 0).all()
    text = proc.tokenizer.decode(batch["input_ids"][1], skip_special_tokens=False)
    # Order inside the turn: main video, then the extra images, then the text.
    assert text.index("<|video_pad|>") < text.index("<|image_pad|>") < text.index("q2")


def test_encode_qwen3_renders_timestamps(tmp_path, processors):
    proc = processors["qwen3_vl"]
    clip = load_video(write_video(tmp_path / "a.mp4", 30, fps=10), VisionConfig(patch_factor=32, **SMALL))
    batch = encode_prompts(proc, ["When does it stop?"], [clip])
    assert "second_per_grid_ts" not in batch
    text = proc.tokenizer.decode(batch["input_ids"][0], skip_special_tokens=False)
    # Timestamps are the mean time of each pair of frames: (0+0.6)/2, (1.2+1.7)/2, (2.3+2.9)/2.
    assert [f"<{t} seconds>" in text for t in ("0.3", "1.4", "2.6")] == [True] * 3
    assert batch["video_grid_thw"].tolist() == [[3, clip.frames.shape[2] // 16, clip.frames.shape[3] // 16]]


def test_encode_rejects_bad_inputs(processors):
    proc = processors["qwen2_5_vl"]
    with pytest.raises(ValueError, match="2 prompts but 1 visuals"):
        encode_prompts(proc, ["a", "b"], [None])
    clip = make_dummy_visual()
    odd = VideoClip(clip.frames[:, :, :50, :50], clip.timestamps, 2.0, 2.0, "odd.mp4", [0, 1, 2, 3], 2.0, 4)
    with pytest.raises(ValueError, match="odd.mp4.*multiple of 28"):
        encode_prompts(proc, ["a"], [odd])
    with pytest.raises(TypeError, match="visual 0"):
        encode_prompts(proc, ["a"], ["video.mp4"])


def test_vision_token_ids_and_dummy_visual(processors):
    for arch, side in (("qwen2_5_vl", 56), ("qwen3_vl", 64)):
        proc = processors[arch]
        assert patch_factor_of(proc) == side // 2
        ids = vision_token_ids(proc)
        assert proc.tokenizer.convert_ids_to_tokens(ids) == [
            "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"
        ]  # fmt: skip
        assert vision_token_ids(proc.tokenizer) == ids
        dummy = make_dummy_visual(VisionConfig(patch_factor=side // 2))
        assert tuple(dummy.frames.shape) == (4, 3, side, side)
        batch = encode_prompts(proc, ["x"], [dummy])
        assert (batch["mm_token_type_ids"] == 2).sum().item() == 8  # grid (2, 4, 4) / merge 2x2


def test_load_frame_folder_samples_like_a_video(tmp_path):
    """Frames 0..11 at 3 fps (named so that plain string order would misplace 10 and 11)."""
    folder = tmp_path / "clip"
    folder.mkdir()
    for i in range(12):
        rgb = np.zeros((48, 64, 3), np.uint8)
        rgb[..., 0], rgb[..., 1], rgb[..., 2] = 8 + 8 * (i % 30), 40 + 50 * (i // 30), 128
        Image.fromarray(rgb).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not a frame")
    clip = vision.load_frame_folder(folder, 3.0, VisionConfig(**SMALL))
    expected = [0, 2, 3, 5, 6, 8, 9, 11]  # 4 s at 2 fps = 8 frames, linspace(0, 11, 8).round()
    assert clip.frame_indices == expected == sample_frame_indices(12, 8)
    assert [decoded_index(f) for f in clip.frames] == expected  # natural order of the file names
    assert clip.timestamps == pytest.approx([i / 3 for i in expected])
    assert (clip.total_frames, clip.native_fps, clip.duration_s) == (12, 3.0, pytest.approx(4.0))
    assert clip.sampled_fps == pytest.approx(8 * 3.0 / 12)
    assert clip.frames.dtype == torch.uint8 and tuple(clip.frames.shape) == (8, 3, 56, 56)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no frame images in .*empty"):
        vision.load_frame_folder(empty, 3.0)
    with pytest.raises(FileNotFoundError, match="frame folder not found: .*absent"):
        vision.load_frame_folder(tmp_path / "absent", 3.0)
