"""Everything between a benchmark sample and its raw output text: media decoding (prefetched in
threads), model loading by path, and batched, explicitly parameterised HF generation.

The decoding defaults are the Video-R1 evaluation protocol's (its ``src/eval_bench.py`` runs
vLLM with ``temperature=0.1, top_p=0.001, max_tokens=1024`` and vLLM's other defaults: no
top-k, no repetition penalty). A checkpoint's own ``generation_config.json`` (Qwen2.5-VL ships
``repetition_penalty=1.05, top_k=1``) is therefore *not* merged in: transformers 5.x fills every
unset field from the model's generation config, so the loaded one is replaced by a clean config
that keeps only the special-token ids. What was dropped is logged and returned for the record.
"""
from __future__ import annotations

import hashlib
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, GenerationConfig

logger = logging.getLogger(__name__)

# Only the token ids survive from a checkpoint's generation config (see module docstring).
KEPT_TOKEN_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


# ------------------------------------------------------------------ media
def load_visual(sample, vision) -> tuple[Any, str | None]:
    """(VideoClip or PIL image, None) or (None, reason) when the media cannot be read."""
    from r1v.vision import load_frame_folder, load_image, load_video

    try:
        if sample.extra.get("media_kind") == "frames":
            return load_frame_folder(sample.media_path, float(sample.extra["fps"]), vision), None
        if sample.data_type == "image":
            return load_image(sample.media_path, vision), None
        return load_video(sample.media_path, vision), None
    except Exception as exc:  # any decoder failure is reported by id (summary), raised with --strict
        return None, f"unreadable {sample.data_type} {sample.media_path}: {type(exc).__name__}: {exc}"


def loaded_batches(batches: list[list], vision, workers: int) -> Iterator[tuple[list, list]]:
    """Yield (batch, [(visual, error)]) while the next batch decodes in background threads."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        def submit(batch: list) -> list[Future]:
            return [pool.submit(load_visual, s, vision) for s in batch]

        upcoming = submit(batches[0]) if batches else []
        for i, batch in enumerate(batches):
            current = upcoming
            if i + 1 < len(batches):
                upcoming = submit(batches[i + 1])
            yield batch, [f.result() for f in current]


# ------------------------------------------------------------------ model and decoding
@dataclass
class DecodingConfig:
    """Sampling settings passed to every ``generate`` call (Video-R1 protocol defaults).

    ``top_k=0`` disables top-k (vLLM's -1); ``temperature=0`` means greedy decoding.
    """

    temperature: float = field(default=0.1, metadata={"help": "Sampling temperature; 0 = greedy."})
    top_p: float = field(default=0.001, metadata={"help": "Nucleus mass kept."})
    top_k: int = field(default=0, metadata={"help": "Top-k cut-off; 0 disables it."})
    repetition_penalty: float = field(default=1.0, metadata={"help": "1.0 disables it."})
    max_new_tokens: int = field(default=1024, metadata={"help": "Generated tokens per answer."})

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0 or self.max_new_tokens < 1:
            raise ValueError(f"invalid decoding settings: {self}")

    def generation_config(self, base: GenerationConfig, suppress_tokens: list[int]) -> GenerationConfig:
        """A complete GenerationConfig: these settings + ``base``'s token ids + suppressed ids."""
        sampling = self.temperature > 0
        cfg = GenerationConfig(
            do_sample=sampling, num_beams=1, max_new_tokens=self.max_new_tokens,
            temperature=self.temperature if sampling else 1.0, top_p=self.top_p if sampling else 1.0,
            top_k=self.top_k if sampling else 0, repetition_penalty=self.repetition_penalty,
            suppress_tokens=list(suppress_tokens) or None,
        )
        for name in KEPT_TOKEN_FIELDS:
            value = getattr(base, name, None)
            if value is not None:
                setattr(cfg, name, value)
        return cfg


def pick_device(local_rank: int = 0) -> torch.device:
    """``cuda:{local_rank}`` when CUDA is available, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` = bfloat16 on GPU (the paper's inference precision), float32 on CPU."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; expected auto or one of {sorted(DTYPES)}")
    return DTYPES[name]


def checkpoint_generation_overrides(model) -> dict[str, Any]:
    """Sampling fields the checkpoint's generation config sets that evaluation ignores."""
    cfg = model.generation_config.to_diff_dict()
    return {k: v for k, v in cfg.items() if k not in KEPT_TOKEN_FIELDS and k != "transformers_version"}


def load_model(path: str, device: torch.device, dtype: str = "auto", attn_implementation: str = "sdpa"):
    """Load (model in eval mode on ``device``, processor) from an HF checkpoint folder.

    The processor is left-padded (batched generation continues every row at the right end).
    """
    processor = AutoProcessor.from_pretrained(path)
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(
        path, dtype=pick_dtype(dtype, device), attn_implementation=attn_implementation)
    model.to(device).eval()
    return model, processor


def batch_seed(seed: int, ids: list[str]) -> int:
    """A seed derived from the run seed and the batch's sample ids.

    Seeding each batch this way makes sampled outputs independent of what ran before it, so a
    resumed run reproduces an uninterrupted one batch for batch.
    """
    text = "\x00".join([str(seed), *ids])
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "little") % (2**63)


class Generator:
    """Batched generation with a fixed GenerationConfig.

    ``model`` and ``processor`` come from :func:`load_model`; ``suppress_tokens`` are the vision
    placeholder ids (``r1v.inputs.vision_token_ids``), which a weak model may otherwise emit.
    """

    def __init__(self, model, processor, decoding: DecodingConfig, suppress_tokens: list[int]):
        self.model = model
        self.processor = processor
        self.decoding = decoding
        self.ignored = checkpoint_generation_overrides(model)
        if self.ignored:
            logger.info("checkpoint generation_config values not used (decoding is explicit): %s",
                        self.ignored)
        self.config = decoding.generation_config(model.generation_config, suppress_tokens)
        # Replaced so no field of the checkpoint's config can be merged into generate() (docstring).
        model.generation_config = self.config

    @property
    def device(self) -> torch.device:
        return self.model.device

    @torch.inference_mode()
    def generate(self, inputs, seed: int) -> list[str]:
        """Decode one batch.

        inputs: the BatchFeature of ``r1v.inputs.encode_prompts`` (input_ids (B, L) left-padded,
        attention_mask (B, L), mm_token_type_ids (B, L), pixel values and grid sizes), all of
        which are passed to the model. Returns B strings, special tokens removed.
        """
        torch.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed_all(seed)
        inputs = inputs.to(self.device)
        out = self.model.generate(**inputs, generation_config=self.config)
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)

    def describe(self) -> dict[str, Any]:
        """The decoding settings and the effective GenerationConfig, for run_config.json."""
        return {"decoding": asdict(self.decoding), "generation_config": self.config.to_diff_dict(),
                "checkpoint_generation_config_ignored": self.ignored,
                "device": str(self.device), "dtype": str(self.model.dtype)}
