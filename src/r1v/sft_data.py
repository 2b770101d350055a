"""Supervised fine-tuning batches: Video-R1 CoT records -> Qwen-VL model inputs with assistant-only labels.

A record is a Video-R1 training record (``r1v.data``) plus ``process``, the reasoning
``<think>...</think>`` (Video-R1-COT-165k's field; teacher-trace datasets write the same). The
assistant target is ``process + "\\n" + solution`` followed by the end-of-turn token
``<|im_end|>`` (Video-R1's SFT target; a bare solution is wrapped in ``<answer>`` tags first).

The prompt side is built exactly as the GRPO trainer builds it: ``r1v.prompts.build_prompt_text``
for the user text, ``r1v.vision`` for frame sampling and sizing (the same ``VisionConfig``
policy), ``r1v.inputs.encode_prompts`` for the chat template and the processor call. The batch
then has the GRPO log-prob layout (``RolloutBatch.forward_inputs``): left-padded prompt, then the
right-padded target, with ``mm_token_type_ids`` extended by zeros over the target (without them
Qwen2.5-VL silently uses 1-D positions). ``labels`` equal ``input_ids`` on the target tokens
(``<|im_end|>`` included) and are -100 on every prompt, vision and pad position.

A record whose media fails to decode, or whose prompt + target exceeds ``max_length``, keeps its
row with a tiny placeholder visual of its own modality and no supervised token (all labels
-100), so every rank still runs the same vision-tower calls under ZeRO-3; the skip is logged and
counted in the batch's ``sft_stats`` (``skipped_media`` / ``skipped_too_long``).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Optional

import torch
from PIL import Image

from r1v.answers import extract_answer_strict
from r1v.inputs import encode_prompts, make_dummy_visual, patch_factor_of
from r1v.prompts import build_prompt_text
from r1v.trainer.batch import PromptBatch, RolloutBatch
from r1v.vision import VisionConfig, load_image, load_video

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
END_OF_TURN = "<|im_end|>"


def sft_target(record: dict) -> str:
    """Assistant text of an SFT record: ``process + "\\n" + solution`` (Video-R1's SFT target).

    ``process`` must be a string that starts with ``<think>`` and ends with ``</think>``
    (whitespace around it is dropped); a ``solution`` without an ``<answer>..</answer>`` pair is
    wrapped in one. Raises ValueError naming the problem_id otherwise.
    """
    pid = record.get("problem_id")
    process = record.get("process")
    if not isinstance(process, str) or not process.strip():
        raise ValueError(f"problem_id={pid!r}: SFT needs a non-empty 'process' string (<think>...</think>), "
                         f"got {process!r}")
    process = process.strip()
    if not (process.startswith("<think>") and process.endswith("</think>")):
        raise ValueError(f"problem_id={pid!r}: 'process' must be wrapped in <think>...</think>, "
                         f"got {process[:60]!r}...")
    solution = record.get("solution")
    if not isinstance(solution, str) or not solution.strip():
        raise ValueError(f"problem_id={pid!r}: SFT needs a non-empty 'solution' string, got {solution!r}")
    solution = solution.strip()
    if extract_answer_strict(solution) is None:
        solution = f"<answer>{solution}</answer>"
    return f"{process}\n{solution}"


def load_visual(record: dict, cfg: VisionConfig):
    """The record's decoded image or sampled video clip (the GRPO trainer's frame policy)."""
    if record.get("data_type", "video") == "image":
        return load_image(record["path"], cfg)
    return load_video(record["path"], cfg)


def placeholder_visual(record: dict, cfg: VisionConfig):
    """A tiny visual of the record's own modality (keeps this rank's vision-tower calls like its peers')."""
    if record.get("data_type", "video") == "image":
        side = 2 * cfg.patch_factor
        return Image.new("RGB", (side, side))
    return make_dummy_visual(cfg)


class SFTCollator:
    """Collate SFT records into model kwargs plus ``labels`` (B, L) and ``sft_stats``.

    Output keys: ``input_ids``, ``attention_mask``, ``mm_token_type_ids``, ``labels`` (B, L) and
    the visual tensors of ``r1v.inputs.encode_prompts`` (``pixel_values_videos``,
    ``video_grid_thw``, ``second_per_grid_ts`` / ``pixel_values``, ``image_grid_thw``), plus
    ``sft_stats`` = {"skipped_media": int, "skipped_too_long": int} for the trainer's metrics.
    max_length: most tokens (prompt with visual tokens + target) a row may have; None = no limit.
    """

    def __init__(self, processor, vision_config: Optional[VisionConfig] = None, max_length: Optional[int] = None):
        self.processor = processor
        cfg = vision_config or VisionConfig()
        self.vision_config = dataclasses.replace(cfg, patch_factor=patch_factor_of(processor))
        self.max_length = max_length
        tokenizer = processor.tokenizer
        self.tokenizer, self.pad_id = tokenizer, tokenizer.pad_token_id
        self.eos_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
        if self.eos_id is None or self.eos_id == getattr(tokenizer, "unk_token_id", None):
            raise ValueError(f"tokenizer lacks the end-of-turn token {END_OF_TURN}")

    def target_ids(self, record: dict) -> list[int]:
        """Token ids of the assistant target, end-of-turn token included."""
        return self.tokenizer(sft_target(record), add_special_tokens=False)["input_ids"] + [self.eos_id]

    def __call__(self, records: list[dict]) -> dict:
        targets = [self.target_ids(rec) for rec in records]
        texts, visuals, valid = [], [], []
        for rec in records:
            try:
                visual, ok = load_visual(rec, self.vision_config), True
            except (OSError, ValueError, RuntimeError) as err:
                logger.warning("skipping media of problem_id=%s (%s): %s", rec.get("problem_id"), rec.get("path"), err)
                visual, ok = placeholder_visual(rec, self.vision_config), False
            texts.append(build_prompt_text(rec))
            visuals.append(visual)
            valid.append(ok)
        skipped_media = valid.count(False)
        prompts = self._encode(texts, visuals, records)
        too_long = self._too_long_rows(prompts, targets, records)
        for i in too_long:  # re-encoded small, like a broken video: the row stays, its loss is zero
            texts[i], visuals[i], valid[i] = ".", placeholder_visual(records[i], self.vision_config), False
        if too_long:
            prompts = self._encode(texts, visuals, records)
        batch = self._with_targets(prompts, targets, valid)
        batch["sft_stats"] = {"skipped_media": skipped_media, "skipped_too_long": len(too_long)}
        return batch

    def _encode(self, texts: list[str], visuals: list, records: list[dict]) -> PromptBatch:
        encoded = encode_prompts(self.processor, texts, visuals, vision_cfg=self.vision_config)
        is_video = [hasattr(v, "frames") for v in visuals]
        counts = {"video": [int(x) for x in is_video], "image": [int(not x) for x in is_video]}
        return PromptBatch.from_encoded(encoded, counts, [{"record": r} for r in records], self.pad_id)

    def _too_long_rows(self, prompts: PromptBatch, targets: list[list[int]], records: list[dict]) -> list[int]:
        if self.max_length is None:
            return []
        rows = []
        for i, n in enumerate(prompts.attention_mask.sum(dim=1).tolist()):
            if n + len(targets[i]) > self.max_length:
                logger.warning("skipping problem_id=%s: prompt (%d tokens) + target (%d) exceeds max_length=%d",
                               records[i].get("problem_id"), n, len(targets[i]), self.max_length)
                rows.append(i)
        return rows

    def _with_targets(self, prompts: PromptBatch, targets: list[list[int]], valid: list[bool]) -> dict:
        """Append the right-padded targets to the left-padded prompts; labels only on valid rows' targets."""
        width = max(len(t) for t in targets)
        ids = torch.full((len(targets), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(targets), width), dtype=torch.long)
        for i, row in enumerate(targets):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = int(valid[i])
        inputs = RolloutBatch(prompts, ids, mask, []).forward_inputs()
        prompt_labels = torch.full_like(prompts.input_ids, IGNORE_INDEX)
        target_labels = torch.where(mask.bool(), ids, torch.full_like(ids, IGNORE_INDEX))
        inputs["labels"] = torch.cat([prompt_labels, target_labels], dim=1)
        return inputs
