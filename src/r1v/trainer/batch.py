"""Row-addressable batches of encoded multimodal prompts and their rollouts.

A Qwen-VL processor returns text tensors with one row per prompt, but visual
tensors flattened over all visuals of the batch (``pixel_values_videos`` is
(sum of patches, D), ``video_grid_thw`` is (num_videos, 3)). GRPO needs to pick rows
(repeat each prompt G times; in FFR, mix original and patched prompts), so
:class:`PromptBatch` remembers which visuals belong to which row and can ``select``
and ``concat`` rows while keeping the visual tensors consistent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

# Visual tensors of Qwen2.5-VL / Qwen3-VL processors, by modality. Per-visual tensors have one
# row per visual; patch tensors have prod(grid_thw) rows per visual.
_MODALITIES = {
    "video": {"patches": "pixel_values_videos", "grid": "video_grid_thw", "per_visual": ("second_per_grid_ts",)},
    "image": {"patches": "pixel_values", "grid": "image_grid_thw", "per_visual": ()},
}


@dataclass
class PromptBatch:
    """Encoded prompts, one row each, left-padded to a common length L.

    input_ids, attention_mask, mm_token_type_ids: (R, L).
    visual: processor's visual tensors (see ``_MODALITIES``).
    row_counts: per modality, how many visuals each row owns, in row order.
    meta: per-row python objects (the record, prompt text, frame timestamps, ...).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    mm_token_type_ids: torch.Tensor
    visual: dict[str, torch.Tensor]
    row_counts: dict[str, list[int]]
    meta: list[dict[str, Any]] = field(default_factory=list)
    pad_token_id: int = 0

    @classmethod
    def from_encoded(cls, encoded, row_counts: dict[str, list[int]], meta: list[dict], pad_token_id: int) -> "PromptBatch":
        """Wrap a processor output. ``row_counts['video'][i]`` = videos in prompt i (same for 'image')."""
        visual = {}
        for spec in _MODALITIES.values():
            for key in (spec["patches"], spec["grid"], *spec["per_visual"]):
                if key in encoded and encoded[key] is not None:
                    visual[key] = encoded[key]
        n = encoded["input_ids"].shape[0]
        counts = {m: list(row_counts.get(m, [0] * n)) for m in _MODALITIES}
        for modality, spec in _MODALITIES.items():
            n_vis = visual[spec["grid"]].shape[0] if spec["grid"] in visual else 0
            if sum(counts[modality]) != n_vis:
                raise ValueError(f"row_counts[{modality!r}] sums to {sum(counts[modality])}, processor returned {n_vis}")
        mm = encoded.get("mm_token_type_ids")
        if mm is None:
            raise ValueError("processor output lacks mm_token_type_ids; Qwen-VL forwards silently degrade without it")
        return cls(encoded["input_ids"], encoded["attention_mask"], mm, visual, counts, list(meta), pad_token_id)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def _visual_slices(self, modality: str) -> list[list[tuple[int, int, int]]]:
        """Per row: (visual index, patch start, patch end) of each of its visuals."""
        spec = _MODALITIES[modality]
        if spec["grid"] not in self.visual:
            return [[] for _ in range(len(self))]
        sizes = self.visual[spec["grid"]].prod(dim=1).tolist()
        starts = [0]
        for s in sizes:
            starts.append(starts[-1] + s)
        out, v = [], 0
        for count in self.row_counts[modality]:
            out.append([(v + k, starts[v + k], starts[v + k + 1]) for k in range(count)])
            v += count
        return out

    def select(self, rows: list[int] | torch.Tensor) -> "PromptBatch":
        """New batch made of ``rows`` (repeats allowed), visual tensors gathered to match."""
        rows = [int(r) for r in rows]
        idx = torch.tensor(rows, dtype=torch.long)
        visual: dict[str, torch.Tensor] = {}
        counts: dict[str, list[int]] = {}
        for modality, spec in _MODALITIES.items():
            slices = self._visual_slices(modality)
            counts[modality] = [self.row_counts[modality][r] for r in rows]
            chosen = [s for r in rows for s in slices[r]]
            if spec["grid"] not in self.visual or not chosen:
                continue  # no visual of this modality left: the model must not see empty tensors for it
            vis_idx = torch.tensor([s[0] for s in chosen], dtype=torch.long)
            patches = self.visual[spec["patches"]]
            visual[spec["patches"]] = torch.cat([patches[a:b] for _, a, b in chosen])
            visual[spec["grid"]] = self.visual[spec["grid"]][vis_idx]
            for key in spec["per_visual"]:
                if key in self.visual:
                    visual[key] = self.visual[key][vis_idx]
        return PromptBatch(
            self.input_ids[idx], self.attention_mask[idx], self.mm_token_type_ids[idx], visual, counts,
            [self.meta[r] for r in rows] if self.meta else [], self.pad_token_id,
        )

    def concat(self, other: "PromptBatch") -> "PromptBatch":
        """Rows of ``self`` then ``other``; text re-padded on the left to the longer length."""
        length = max(self.input_ids.shape[1], other.input_ids.shape[1])
        parts = [b._left_pad(length) for b in (self, other)]
        visual: dict[str, torch.Tensor] = {}
        for key in set(self.visual) | set(other.visual):
            present = [b.visual[key] for b in (self, other) if key in b.visual]
            visual[key] = torch.cat(present)
        counts = {m: self.row_counts[m] + other.row_counts[m] for m in _MODALITIES}
        return PromptBatch(
            torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts]),
            visual, counts, self.meta + other.meta, self.pad_token_id,
        )

    def _left_pad(self, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        extra = length - self.input_ids.shape[1]
        if extra == 0:
            return self.input_ids, self.attention_mask, self.mm_token_type_ids
        n = len(self)
        pad = lambda t, v: torch.cat([torch.full((n, extra), v, dtype=t.dtype, device=t.device), t], dim=1)
        return pad(self.input_ids, self.pad_token_id), pad(self.attention_mask, 0), pad(self.mm_token_type_ids, 0)

    def to(self, device) -> "PromptBatch":
        return PromptBatch(
            self.input_ids.to(device), self.attention_mask.to(device), self.mm_token_type_ids.to(device),
            {k: v.to(device) for k, v in self.visual.items()}, self.row_counts, self.meta, self.pad_token_id,
        )

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments for ``model.generate`` / ``model(...)`` on the prompts alone."""
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "mm_token_type_ids": self.mm_token_type_ids,
            **self.visual,
        }


@dataclass
class RolloutBatch:
    """N = B*G rollouts, group-major, each paired with the prompt row it was sampled from.

    prompts: a PromptBatch with N rows (row i = the exact prompt of rollout i).
    completion_ids / completion_mask: (N, C); mask is 1 up to and including the first EOS.
    rewards: (N, F) per reward function; advantages: (N,).
    old_per_token_logps / ref_per_token_logps: (N, C) or None.
    valid: (N,) bool; False rows (e.g. a video that failed to decode) have zero mask and reward.
    """

    prompts: PromptBatch
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    completions_text: list[str]
    rewards: Optional[torch.Tensor] = None
    advantages: Optional[torch.Tensor] = None
    old_per_token_logps: Optional[torch.Tensor] = None
    ref_per_token_logps: Optional[torch.Tensor] = None
    valid: Optional[torch.Tensor] = None
    extras: dict[str, Any] = field(default_factory=dict)

    def forward_inputs(self) -> dict[str, torch.Tensor]:
        """Model kwargs for the prompt+completion forward used by every log-prob pass."""
        p = self.prompts
        zeros = torch.zeros_like(self.completion_ids)
        return {
            "input_ids": torch.cat([p.input_ids, self.completion_ids], dim=1),
            "attention_mask": torch.cat([p.attention_mask, self.completion_mask.to(p.attention_mask.dtype)], dim=1),
            # Completion tokens are text (type 0); without this Qwen2.5-VL silently falls back to 1-D positions.
            "mm_token_type_ids": torch.cat([p.mm_token_type_ids, zeros.to(p.mm_token_type_ids.dtype)], dim=1),
            **p.visual,
        }
