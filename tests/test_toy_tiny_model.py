"""The tiny offline checkpoints (r1v.toy.tiny) load like real ones and run with r1v.inputs."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from r1v.inputs import encode_prompts, make_dummy_visual, vision_token_ids
from r1v.toy.tiny import SPECIAL_TOKENS, build_tiny_checkpoint, main
from r1v.vision import VideoClip, VisionConfig

ARCHS = ("qwen2_5_vl", "qwen3_vl")
PROMPT = (
    "How many red circles appear in the video?Options:\nA. 1\nB. 2\n\nProvide your detailed reasoning between "
    "the <think> and </think> tags, and then give your final answer between the <answer> and </answer> tags."
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """arch -> (checkpoint dir, processor, model), each loaded back by path."""
    root = tmp_path_factory.mktemp("tiny")
    out = {}
    for arch in ARCHS:
        path = build_tiny_checkpoint(root / arch, arch)
        model = AutoModelForImageTextToText.from_pretrained(path).eval()
        out[arch] = (path, AutoProcessor.from_pretrained(path), model)
    return out


def moving_clip(factor: int, n: int = 6, fps: float = 3.0) -> VideoClip:
    """A bright square moving right over n frames of (2f, 3f) pixels, sampled from a 30 fps source."""
    frames = torch.zeros(n, 3, 2 * factor, 3 * factor, dtype=torch.uint8)
    for t in range(n):
        frames[t, :, 10:30, 8 * t : 8 * t + 20] = 255
    stride = round(30 / fps)
    indices = [t * stride for t in range(n)]
    return VideoClip(frames, [i / 30 for i in indices], fps, n * stride / 30, "<moving>", indices, 30.0, n * stride)


def test_checkpoint_files_config_and_size(world):
    for arch in ARCHS:
        path, _, model = world[arch]
        names = {p.name for p in path.iterdir()}
        assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= names
        assert "chat_template.jinja" in names or "chat_template.json" in names
        cfg = model.config
        assert cfg.model_type == arch and cfg.text_config.hidden_size == 64
        assert cfg.text_config.num_hidden_layers == 2 and cfg.vision_config.depth == 2
        head_dim = cfg.text_config.hidden_size // cfg.text_config.num_attention_heads
        assert sum(cfg.text_config.rope_parameters["mrope_section"]) == head_dim // 2
        assert sum(p.numel() for p in model.parameters()) < 1_000_000
        assert cfg.text_config.vocab_size >= len(world[arch][1].tokenizer)


def test_generation_config_carries_release_defaults(world):
    gen = json.loads((world["qwen2_5_vl"][0] / "generation_config.json").read_text())
    tok = world["qwen2_5_vl"][1].tokenizer
    assert gen["eos_token_id"] == [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]
    assert gen["pad_token_id"] == tok.pad_token_id and gen["top_k"] == 1


def test_build_is_deterministic(tmp_path):
    a = build_tiny_checkpoint(tmp_path / "a", "qwen2_5_vl", seed=3)
    b = build_tiny_checkpoint(tmp_path / "b", "qwen2_5_vl", seed=3)
    c = build_tiny_checkpoint(tmp_path / "c", "qwen2_5_vl", seed=4)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()


def test_cli_writes_checkpoint(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "cli"), "--arch", "qwen3_vl"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cli")
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["model_type"] == "qwen3_vl"


def test_tokenizer_round_trip_and_special_tokens(world):
    for arch in ARCHS:
        tok = world[arch][1].tokenizer
        for text in (PROMPT, "<think>wait, 3.14 + 42 = 45.14</think><answer>B</answer>", "héllo 世界 ✓"):
            ids = tok(text)["input_ids"]
            assert tok.decode(ids) == text
        assert len(tok(PROMPT)["input_ids"]) < len(PROMPT.encode()) / 2  # BPE merges were learned
        ids = tok.convert_tokens_to_ids(SPECIAL_TOKENS)
        assert ids == list(range(ids[0], ids[0] + len(SPECIAL_TOKENS)))  # Qwen's order
        assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
        assert tok("<|im_start|>user")["input_ids"][0] == tok.convert_tokens_to_ids("<|im_start|>")
        assert set(tok.all_special_tokens) >= set(SPECIAL_TOKENS)


def test_chat_template_renders_like_qwen(world):
    turn = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Q?"}]}]
    body = "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>Q?<|im_end|>\n<|im_start|>assistant\n"
    system = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    render = world["qwen2_5_vl"][1].apply_chat_template
    assert render(turn, tokenize=False, add_generation_prompt=True) == system + body
    assert world["qwen3_vl"][1].apply_chat_template(turn, tokenize=False, add_generation_prompt=True) == body
    convo = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Q"}]},
        {"role": "assistant", "content": "<answer>A</answer>"},
    ]
    assert render(convo, tokenize=False, add_vision_id=True) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n"
        "Picture 1: <|vision_start|><|image_pad|><|vision_end|>Picture 2: <|vision_start|><|image_pad|><|vision_end|>"
        "Q<|im_end|>\n<|im_start|>assistant\n<answer>A</answer><|im_end|>\n"
    )


def test_qwen2_5_forward_uses_mm_token_type_ids(world):
    _, proc, model = world["qwen2_5_vl"]
    batch = encode_prompts(proc, [PROMPT, "short"], [moving_clip(28), moving_clip(28, n=4, fps=6.0)])
    with torch.no_grad():
        logits = model(**batch).logits
        without = model(**{k: v for k, v in batch.items() if k != "mm_token_type_ids"}).logits
    assert logits.shape == (*batch["input_ids"].shape, model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()
    # Without the type ids Qwen2.5-VL silently falls back to 1-D positions: the logits change.
    assert not torch.allclose(logits, without, atol=1e-6)


def test_qwen2_5_sampled_fps_changes_temporal_positions(world):
    _, proc, model = world["qwen2_5_vl"]
    slow, fast = moving_clip(28, fps=1.0), moving_clip(28, fps=10.0)
    assert torch.equal(slow.frames, fast.frames)
    with torch.no_grad():
        a = model(**encode_prompts(proc, ["x"], [slow])).logits
        b = model(**encode_prompts(proc, ["x"], [fast])).logits
    assert not torch.allclose(a, b, atol=1e-6)  # second_per_grid_ts reaches M-RoPE


@pytest.mark.parametrize("arch", ARCHS)
def test_generate_sampling_suppresses_vision_tokens(world, arch):
    _, proc, model = world[arch]
    factor = 28 if arch == "qwen2_5_vl" else 32
    batch = encode_prompts(proc, [PROMPT], [moving_clip(factor)])
    banned = vision_token_ids(proc)
    # Make vision tokens the model's favourite outputs so the check can fail.
    hook = model.lm_head.register_forward_hook(lambda m, i, out: out.index_add(-1, torch.tensor(banned), _boost(out)))
    try:
        kw = dict(max_new_tokens=12, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, num_return_sequences=4)
        torch.manual_seed(0)
        free = model.generate(**batch, **kw)
        torch.manual_seed(0)
        out = model.generate(**batch, **kw, suppress_tokens=banned)
    finally:
        hook.remove()
    prompt_len = batch["input_ids"].shape[1]
    assert torch.isin(free[:, prompt_len:], torch.tensor(banned)).any()
    new = out[:, prompt_len:]
    assert out.shape[0] == 4 and new.shape[1] >= 1
    assert not torch.isin(new, torch.tensor(banned)).any()
    assert len({tuple(row.tolist()) for row in new}) > 1  # sampling, not the near-greedy release defaults


def _boost(logits: torch.Tensor) -> torch.Tensor:
    return torch.full((*logits.shape[:-1], 4), 30.0, dtype=logits.dtype)


def test_qwen3_forward_requires_mm_token_type_ids(world):
    _, proc, model = world["qwen3_vl"]
    batch = encode_prompts(proc, [PROMPT], [moving_clip(32)])
    with torch.no_grad():
        assert torch.isfinite(model(**batch).logits).all()
        with pytest.raises(ValueError, match="mm_token_type_ids"):
            model(**{k: v for k, v in batch.items() if k != "mm_token_type_ids"})


@pytest.mark.parametrize("arch", ARCHS)
def test_dummy_visual_one_token_generate(world, arch):
    _, proc, model = world[arch]
    dummy = make_dummy_visual(VisionConfig(patch_factor=28 if arch == "qwen2_5_vl" else 32))
    batch = encode_prompts(proc, ["."], [dummy])
    out = model.generate(**batch, max_new_tokens=1, do_sample=False, suppress_tokens=vision_token_ids(proc))
    assert out.shape == (1, batch["input_ids"].shape[1] + 1)
