"""Tiny random-weight Qwen2.5-VL / Qwen3-VL checkpoints for offline tests and demos.

``build_tiny_checkpoint(out_dir, arch)`` writes a folder that
``AutoProcessor.from_pretrained`` and ``AutoModelForImageTextToText.from_pretrained`` load exactly
like a hub checkpoint: a byte-level BPE tokenizer trained on a small built-in corpus (Qwen's
pre-tokenizer, Qwen's special tokens in Qwen's order, a chat template rendering like Qwen's),
image and video processors whose pixel bounds match ``r1v.vision.VisionConfig`` defaults, a
config sized by ``TinySize`` (default: hidden 64, 2 text layers, vision depth 2), random weights
and a generation config carrying the real checkpoints' decoding defaults (so callers must override
them explicitly).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    AutoModelForImageTextToText,
    GenerationConfig,
    Qwen2_5_VLConfig,
    Qwen2_5_VLProcessor,
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
    Qwen3VLConfig,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

from r1v.vision import VisionConfig

logger = logging.getLogger(__name__)

ARCHS = ("qwen2_5_vl", "qwen3_vl")


@dataclass(frozen=True)
class TinySize:
    """Sizes of a tiny student. The head size (hidden / heads) must be a multiple of 16 so that
    the three M-RoPE sections (temporal, height, width) split its rotary half as Qwen's do
    (1/4, 3/8, 3/8: [16, 24, 24] for head size 128, [2, 3, 3] for 16)."""

    hidden: int = 64
    intermediate: int = 128
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    vision_depth: int = 2
    vision_hidden: int = 64
    vision_heads: int = 4

    def __post_init__(self):
        head = self.hidden // self.heads
        if self.hidden % self.heads or head % 16:
            raise ValueError(f"hidden/heads = {self.hidden}/{self.heads} must give a head size that is a multiple of 16")
        if self.heads % self.kv_heads or self.vision_hidden % self.vision_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads}) and "
                             f"vision_hidden ({self.vision_hidden}) of vision_heads ({self.vision_heads})")
        if min(self.layers, self.vision_depth, self.intermediate) < 1:
            raise ValueError(f"layers, vision_depth and intermediate must be >= 1, got {self}")

    @property
    def mrope_section(self) -> list[int]:
        half = self.hidden // self.heads // 2
        return [half // 4, 3 * half // 8, 3 * half // 8]



# Qwen2/2.5 special tokens in the order of their ids (151643..151656 in the real vocabulary).
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]  # fmt: skip
# Non-special added tokens that follow them in the real vocabularies (Qwen3 adds the last four).
ADDED_TOKENS = {
    "qwen2_5_vl": ["<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                   "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"],
    "qwen3_vl": ["<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
                 "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
                 "<think>", "</think>"],
}  # fmt: skip


# Decoding defaults of the public checkpoints' generation_config.json (Qwen2.5-VL-7B-Instruct,
# Qwen3-VL-8B-Instruct). They are near-greedy for Qwen2.5-VL, so any rollout code must override them.
GENERATION_DEFAULTS = {
    "qwen2_5_vl": dict(do_sample=True, repetition_penalty=1.05, temperature=0.1, top_p=0.001, top_k=1),
    "qwen3_vl": dict(do_sample=True, repetition_penalty=1.0, temperature=0.7, top_p=0.8, top_k=20),
}


def _chat_template(default_system: str | None) -> str:
    """Jinja chat template rendering like Qwen-VL's for system/user/assistant turns.

    Content is a string or a list of parts ({"type": "image"|"video"|"text", ...}); each visual
    becomes ``<|vision_start|><|image_pad|><|vision_end|>`` (or ``<|video_pad|>``), optionally
    numbered with ``add_vision_id``. ``default_system`` is prepended when the first turn is not a
    system turn (Qwen2.5-VL does this; Qwen3-VL does not). Tool calls and reasoning fields of the
    real Qwen3 template are not rendered.
    """
    system = ""
    if default_system is not None:
        system = (
            "{%- if loop.first and message['role'] != 'system' -%}"
            "{{- '<|im_start|>system\n" + default_system + "<|im_end|>\n' -}}{%- endif -%}"
        )
    visual = (
        "{%- if part['type'] == '{kind}' or '{kind}' in part{extra} -%}"
        "{%- set seen.{kind} = seen.{kind} + 1 -%}"
        "{%- if add_vision_id -%}{{- '{label} ' ~ seen.{kind} ~ ': ' -}}{%- endif -%}"
        "{{- '<|vision_start|><|{kind}_pad|><|vision_end|>' -}}"
    )
    image = visual.replace("{kind}", "image").replace("{label}", "Picture")
    image = image.replace("{extra}", " or 'image_url' in part")
    video = visual.replace("{kind}", "video").replace("{label}", "Video").replace("{extra}", "")
    return (
        "{%- set seen = namespace(image=0, video=0) -%}"
        "{%- for message in messages -%}" + system + "{{- '<|im_start|>' ~ message['role'] ~ '\n' -}}"
        "{%- if message['content'] is string -%}{{- message['content'] -}}"
        "{%- else -%}{%- for part in message['content'] -%}"
        + image
        + video.replace("{%- if", "{%- elif", 1)
        + "{%- elif 'text' in part -%}{{- part['text'] -}}"
        "{%- endif -%}{%- endfor -%}{%- endif -%}"
        "{{- '<|im_end|>\n' -}}{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
    )


CHAT_TEMPLATES = {
    "qwen2_5_vl": _chat_template("You are a helpful assistant."),
    "qwen3_vl": _chat_template(None),
}

# Training text for the tiny BPE: the R1 reasoning prompt (Video-R1 src/eval_bench.py wording),
# question/option/answer shapes of the synthetic tasks, digits and tags, so prompts tokenize into
# multi-byte merges rather than single bytes.
CORPUS = """\
Please think about this question as if you were a human pondering deeply. Engage in an internal dialogue using expressions such as 'let me think', 'wait', 'Hmm', 'oh, I see', 'let's break it down', etc, or other natural language thought expressions It's encouraged to include self-reflection or verification in the reasoning process. Provide your detailed reasoning between the <think> and </think> tags, and then give your final answer between the <answer> and </answer> tags.
Please provide only the single option letter (e.g., A, B, C, D, etc.) within the <answer> </answer> tags.
Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags.
Please transcribe text from the image/video clearly and provide your text answer within the <answer> </answer> tags.
Please provide your text answer within the <answer> </answer> tags.
How many red circles appear in the video?Options:
A. 1
B. 2
C. 3
D. 4
Which object moves to the left first?Options:
A. the blue square
B. the green triangle
C. the yellow circle
D. the red star
What color is the shape in the top right corner at the end of the video?
Does the ball move faster or slower after it bounces? In which direction does the square rotate?
Where is the triangle relative to the circle: left, right, above or below?
How many times does the light blink before the car stops?
<think>Let me think. The video shows two squares moving right. Wait, a third one enters at 3.5 seconds. Hmm, so the count is 3. Oh, I see, let's break it down frame by frame.</think>
<answer>B</answer> <answer>3</answer> <answer>C</answer> <answer>A</answer> <answer>D</answer> <answer>12.5</answer>
0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 20 25 30 42 64 100 0.5 1.5 2.0 3.14 seconds frames
The evidence is between 2.0 and 4.5 seconds, in the region near the upper left. Look again at frame 6.
Counting, dynamics, temporal order, spatial relation, attribute. Before, after, first, last, then.
The answer is wrong because the model missed the second object. Focus on the motion after the bounce.
You are a helpful assistant. The user asks a question about a picture or a video and the assistant answers.
"""


def build_tokenizer(arch: str, vocab_size: int = 800) -> Qwen2Tokenizer:
    """Train a byte-level BPE on the built-in corpus and wrap it as a Qwen2 tokenizer.

    ``vocab_size`` bounds the total length including the special and added tokens; the small corpus
    runs out of merges a little earlier (about 770 tokens for the default 800).
    """
    n_extra = len(SPECIAL_TOKENS) + len(ADDED_TOKENS[arch])
    if vocab_size < 256 + n_extra + 16:
        raise ValueError(f"vocab_size {vocab_size} too small: 256 byte tokens + {n_extra} specials are needed")
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(pattern=Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - n_extra,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    # Specials first, in Qwen's order, so their relative ids match the real vocabulary.
    bpe.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    bpe.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED_TOKENS[arch]])
    tokenizer = Qwen2Tokenizer(
        tokenizer_object=bpe,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        errors="replace",
        model_max_length=32768,
        chat_template=CHAT_TEMPLATES[arch],
    )
    ids = tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS + ADDED_TOKENS[arch])
    start = ids[0]
    if ids != list(range(start, start + len(ids))):
        raise RuntimeError(f"special token ids are not contiguous in Qwen's order: {ids}")
    return tokenizer


def build_processor(arch: str, tokenizer: Qwen2Tokenizer, vision: VisionConfig | None = None):
    """Processor with image/video pixel bounds taken from ``VisionConfig`` defaults for the arch."""
    vision = vision or VisionConfig(patch_factor=32 if arch == "qwen3_vl" else 28)
    patch = vision.patch_factor // 2
    # Qwen3-VL normalises with mean/std 0.5 (as its released preprocessor config does).
    norm = dict(image_mean=[0.5] * 3, image_std=[0.5] * 3) if arch == "qwen3_vl" else {}
    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": vision.image_min_pixels, "longest_edge": vision.image_max_pixels},
        patch_size=patch,
        merge_size=2,
        temporal_patch_size=2,
        **norm,
    )
    if arch == "qwen2_5_vl":
        video_processor = Qwen2VLVideoProcessor(
            size={"shortest_edge": vision.video_min_pixels, "longest_edge": vision.video_max_pixels},
            patch_size=patch,
            cap_pixels_per_frame=True,  # the qwen-vl-utils 1.05 x min_pixels per-frame rule
            do_sample_frames=False,
            fps=vision.fps,
            min_frames=vision.min_frames,
            max_frames=vision.max_frames,
        )
        return Qwen2_5_VLProcessor(image_processor, tokenizer, video_processor, chat_template=CHAT_TEMPLATES[arch])
    # Qwen3-VL's video bounds are for the whole clip (frames x pixels), as in its own processor.
    video_processor = Qwen3VLVideoProcessor(
        size={
            "shortest_edge": vision.video_min_pixels * vision.min_frames,
            "longest_edge": vision.video_frame_max_pixels * vision.max_frames,
        },
        patch_size=patch,
        cap_pixels_per_frame=False,
        do_sample_frames=False,
        fps=vision.fps,
        min_frames=vision.min_frames,
        max_frames=vision.max_frames,
    )
    return Qwen3VLProcessor(image_processor, tokenizer, video_processor, chat_template=CHAT_TEMPLATES[arch])


def build_config(arch: str, tokenizer: Qwen2Tokenizer, size: TinySize | None = None):
    """Model config of ``size`` (default ``TinySize()``), token ids from ``tokenizer``."""
    size = size or TinySize()
    tok = tokenizer.convert_tokens_to_ids
    # Pad the embedding like the real checkpoints (152,064 rows for 151,665 tokens).
    vocab = -(-len(tokenizer) // 64) * 64
    token_ids = dict(
        image_token_id=tok("<|image_pad|>"),
        video_token_id=tok("<|video_pad|>"),
        vision_start_token_id=tok("<|vision_start|>"),
        vision_end_token_id=tok("<|vision_end|>"),
    )
    text = dict(
        vocab_size=vocab,
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads,
        max_position_embeddings=32768,
        bos_token_id=tok("<|endoftext|>"),
        eos_token_id=tok("<|im_end|>"),
        pad_token_id=tok("<|endoftext|>"),
    )
    vision = dict(depth=size.vision_depth, hidden_size=size.vision_hidden, intermediate_size=2 * size.vision_hidden,
                  num_heads=size.vision_heads, out_hidden_size=size.hidden)
    if arch == "qwen2_5_vl":
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": size.mrope_section}
        # Qwen2.5-VL alternates windowed and full attention; the last block attends fully.
        vision.update(patch_size=14, fullatt_block_indexes=[size.vision_depth - 1], window_size=112)
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **token_ids)
    text.update(head_dim=size.hidden // size.heads)
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 5e6,
        "mrope_section": size.mrope_section,
        "mrope_interleaved": True,
    }
    vision.update(patch_size=16, num_position_embeddings=256, deepstack_visual_indexes=[0])
    return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **token_ids)


def build_tiny_model(arch: str = "qwen2_5_vl", seed: int = 0, vocab_size: int = 800, size: TinySize | None = None):
    """(random-weight model, processor) of ``arch`` and ``size``; the caller's random stream is untouched."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS}")
    tokenizer = build_tokenizer(arch, vocab_size)
    processor = build_processor(arch, tokenizer)
    config = build_config(arch, tokenizer, size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    return model, processor


def save_tiny_checkpoint(model, processor, out_dir: str | Path) -> Path:
    """Save ``model`` and ``processor`` with the real checkpoints' generation defaults (see the module docstring)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = model.config.text_config
    arch = model.config.model_type
    model.generation_config = GenerationConfig(
        bos_token_id=text.bos_token_id, pad_token_id=text.pad_token_id,
        eos_token_id=[text.eos_token_id, text.bos_token_id], **GENERATION_DEFAULTS[arch],
    )  # fmt: skip
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_checkpoint(
    out_dir: str | Path, arch: str = "qwen2_5_vl", seed: int = 0, vocab_size: int = 800, warmup_steps: int = 0,
    size: TinySize | None = None,
) -> Path:
    """Write a loadable tiny checkpoint (model, tokenizer, processor, generation config) to ``out_dir``.

    ``warmup_steps > 0`` runs ``r1v.toy.format_warmup.warm_up_format`` (seeded with ``seed``) before
    saving, so the student already answers in the ``<think>..</think>\n<answer>..</answer>``
    format at about chance accuracy and GRPO rewards vary from the first step; its statistics are
    written to ``format_warmup.json``. With 0 (default) the weights stay purely random.
    Deterministic for a given (arch, seed, vocab_size, warmup_steps, size). Returns the folder path.
    """
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    model, processor = build_tiny_model(arch, seed, vocab_size, size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if warmup_steps:
        from r1v.toy.format_warmup import warm_up_format  # imports the synthetic-data stack: only when asked

        stats = warm_up_format(model, processor, steps=warmup_steps, seed=seed)
        (out / "format_warmup.json").write_text(json.dumps({"seed": seed, **stats}, indent=2) + "\n")
    save_tiny_checkpoint(model, processor, out)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("wrote tiny %s checkpoint (%d params, vocab %d) to %s", arch, n_params, len(processor.tokenizer), out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a tiny random-weight Qwen-VL checkpoint for offline tests.")
    parser.add_argument("--out", required=True, help="Output folder.")
    parser.add_argument("--arch", default="qwen2_5_vl", choices=ARCHS, help="Model family.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random weights.")
    parser.add_argument("--vocab-size", type=int, default=800, help="Tokenizer size including special tokens.")
    parser.add_argument(
        "--warmup-steps", type=int, default=0,
        help="Format warm-up steps (r1v.toy.format_warmup; 120 takes ~15 s on one thread). 0 keeps random weights.",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    print(build_tiny_checkpoint(args.out, args.arch, args.seed, args.vocab_size, args.warmup_steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
