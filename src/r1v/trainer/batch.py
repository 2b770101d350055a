"""Row-addressable batches of encoded multimodal prompts and their rollouts.

A Qwen-VL processor returns text tensors with one row per prompt, but visual
tensors flattened over all visuals of the batch (``pixel_values_videos`` is
(sum of patches, D), ``video_grid_thw`` is (num_videos, 3)). GRPO needs to pick rows
(repeat each prompt G times; in FFR, mix original and patched prompts), so
:class:`PromptBatch` remembers which visuals belong to which row and can ``select``
and ``concat`` rows while keeping the visual tensors consistent.

:class:`RolloutBatch` holds the rollouts and everything the stages attach to them. Each
row carries a group id (the rows standardised together, :func:`advantages_by_group`), a
:class:`RowSource` and optionally behaviour log-probs, so a group may hold the G on-policy
rollouts of a prompt plus rows that were not sampled from the current policy (a patched
prompt's rollout, a teacher trace, a replayed rollout). :func:`concat_rollouts` and
``RolloutBatch.select`` are the only ways to combine or pick rollouts; both keep every field.

Rules for variants of the trainer (each a subclass overriding stages), so that variants stack
(``class X(VariantA, VariantB)`` runs both):

* every stage override calls ``super()`` for its stage and works on what it returns:
  ``generate_completions`` extends or replaces rows of ``super().generate_completions(...)``
  with :func:`concat_rollouts` / ``select`` (new rows come from the trainer's
  ``make_rollouts(prompts, ids, group_ids=..., source=...)``; rebuilding the returned batch
  field by field would drop the fields set below it); ``combine_rewards(rollouts, columns=None)`` returns
  ``super().combine_rewards(rollouts, columns)`` plus its own terms, and a variant that
  replaces some reward functions by its own scalar (FFR: accuracy and format by the RIR
  scalar) passes the remaining ``columns`` to ``super()`` instead of summing them itself;
* a row a variant adds gets the group id of the group it joins and its ``source``; a
  per-group rule that assumes G rollouts from the sampler (T-GRPO's bonuses) reads them with
  ``on_policy_rows(G)`` and leaves the other rows alone;
* anything per row that the base trainer or another variant reads is a typed field here;
  ``extras`` holds data private to one variant, under that variant's own key, and no variant
  reads another's key; ``select`` and :func:`concat_rollouts` carry it unchanged (they cannot
  re-index it), so a variant sets it after its last change of rows (FFR: on the chosen rows);
* the loss is changed by overriding the trainer's ``surrogate()`` with a ``Surrogate`` whose
  subclass replaces one piece (ratio, shape or clip); stacked variants subclass each other's
  surrogate rather than the loss function;
* extra ``generate`` calls follow the trainer's ZeRO-3 rule: the ranks agree whether the
  round happens, and a rank without rows for it makes a dummy call (``run_dummy_generate``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import IntEnum
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


class RowSource(IntEnum):
    """Where a rollout row came from; stored per row in ``RolloutBatch.source`` as these codes."""

    ON_POLICY = 0  # sampled from the current policy on the row's own prompt
    PATCHED = 1  # sampled from the current policy on a prompt changed after the first pass (FFR)
    TEACHER = 2  # a trace written by another model (off-policy)
    REPLAY = 3  # a rollout of an earlier policy, taken from a buffer (off-policy)


@dataclass
class RolloutBatch:
    """N rollouts, each paired with the prompt row it was sampled from.

    prompts: a PromptBatch with N rows (row i = the exact prompt of rollout i).
    completion_ids / completion_mask: (N, C); mask is 1 up to and including the first EOS.
    rewards: (N, F) per reward function; advantages: (N,).
    old_per_token_logps / ref_per_token_logps: (N, C) or None.
    valid: (N,) bool; False rows (e.g. a video that failed to decode) have zero mask and reward.
    group_ids: (N,) long; rows with one id are standardised together. The base trainer gives
        the G rollouts of prompt row b the id b, group-major; None before generation sets it.
    source: (N,) long ``RowSource`` codes; all ON_POLICY when not given.
    behaviour_logps: (N, C) log-probs of each token under the policy that produced it, or None;
        rows without them (on-policy rows, traces without scores) hold 0.
    extras: data private to one variant, under the variant's own key (module docstring).
        The scalar reward (``reward``) is kept under the key "reward", the name the stages
        have always used for it.
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
    group_ids: Optional[torch.Tensor] = None
    source: Optional[torch.Tensor] = None
    behaviour_logps: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        if self.source is None:
            self.source = torch.full((self.completion_ids.shape[0],), int(RowSource.ON_POLICY), dtype=torch.long,
                                     device=self.completion_ids.device)

    @property
    def reward(self) -> Optional[torch.Tensor]:
        """Scalar reward per row (N,) from ``combine_rewards``; None before that stage."""
        return self.extras.get("reward")

    @reward.setter
    def reward(self, value: Optional[torch.Tensor]) -> None:
        self.extras["reward"] = value

    def row_fields(self) -> dict[str, Any]:
        """Every per-row field by name (None where unset); ``reward`` included, ``extras`` not."""
        return {"prompts": self.prompts, "completion_ids": self.completion_ids,
                "completion_mask": self.completion_mask, "completions_text": self.completions_text,
                **{name: getattr(self, name) for name in _ROW_TENSORS}}

    def select(self, rows: list[int] | torch.Tensor) -> "RolloutBatch":
        """New batch made of ``rows`` (repeats allowed); every per-row field is taken along, ``extras`` shared."""
        rows = [int(r) for r in rows]
        fields = {}
        for name, value in self.row_fields().items():
            if value is None:
                fields[name] = None
            elif isinstance(value, list):
                fields[name] = [value[r] for r in rows]
            elif isinstance(value, PromptBatch):
                fields[name] = value.select(rows)
            else:
                fields[name] = value[torch.tensor(rows, dtype=torch.long, device=value.device)]
        return _build(fields, {k: v for k, v in self.extras.items() if k != "reward"})

    def on_policy_rows(self, group_size: int) -> torch.Tensor:
        """Row indices (K, G) of the on-policy rows of each group, groups by ascending id.

        The plain layout gives ``arange(N).view(-1, G)``. Raises ValueError when a group
        holds a number of on-policy rows other than ``group_size``.
        """
        if self.group_ids is None:
            raise ValueError("rollouts have no group ids yet")
        on = (self.source.cpu() == int(RowSource.ON_POLICY)).nonzero().flatten()
        ids = self.group_ids.cpu()[on]
        order = torch.sort(ids, stable=True).indices
        counts = torch.unique(ids, return_counts=True)[1]
        if counts.numel() and bool((counts != group_size).any()):
            raise ValueError(f"groups hold {sorted(set(counts.tolist()))} on-policy rows, expected {group_size}")
        return on[order].view(-1, group_size)

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


# Optional per-row tensors of a RolloutBatch; the (N, C) ones are right-padded when completion lengths differ.
_ROW_TENSORS = ("rewards", "reward", "advantages", "old_per_token_logps", "ref_per_token_logps", "valid",
                "group_ids", "source", "behaviour_logps")
_PER_TOKEN = ("completion_ids", "completion_mask", "old_per_token_logps", "ref_per_token_logps", "behaviour_logps")


def _build(fields: dict[str, Any], extras: dict[str, Any]) -> RolloutBatch:
    reward = fields.pop("reward")
    batch = RolloutBatch(**fields, extras=extras)
    if reward is not None:
        batch.reward = reward
    return batch


def concat_rollouts(*batches: RolloutBatch) -> RolloutBatch:
    """Rows of each batch in order, every field kept.

    Prompts are re-padded on the left (``PromptBatch.concat``); completions and per-token
    tensors are right-padded to the longest completion (pad token id, mask 0, log-probs 0).
    An optional per-row field must be set on all batches or on none (ValueError otherwise:
    e.g. rewards of one side only would leave rows unscored), except ``behaviour_logps``,
    which rows without them hold as 0. ``extras`` are merged; a key present in several
    batches must hold the same object in each (ValueError otherwise).
    """
    if not batches:
        raise ValueError("concat_rollouts needs at least one batch")
    width = max(b.completion_ids.shape[1] for b in batches)
    pad_id = batches[0].prompts.pad_token_id
    parts = [b.row_fields() for b in batches]
    fields: dict[str, Any] = {}
    for name in parts[0]:
        values = [p[name] for p in parts]
        if name == "behaviour_logps" and any(v is not None for v in values):
            dtype = next(v.dtype for v in values if v is not None)
            values = [v if v is not None else torch.zeros_like(b.completion_mask, dtype=dtype)
                      for v, b in zip(values, batches)]
        if all(v is None for v in values):
            fields[name] = None
        elif any(v is None for v in values):
            raise ValueError(f"concat_rollouts: {name!r} is set on some batches only")
        elif name == "prompts":
            fields[name] = functools.reduce(PromptBatch.concat, values)
        elif name == "completions_text":
            fields[name] = [t for v in values for t in v]
        else:
            if name in _PER_TOKEN:
                fill = pad_id if name == "completion_ids" else 0
                values = [torch.nn.functional.pad(v, (0, width - v.shape[1]), value=fill) for v in values]
            fields[name] = torch.cat([v.to(values[0].device) for v in values])
    extras: dict[str, Any] = {}
    for b in batches:
        for key, value in b.extras.items():
            if key == "reward":
                continue  # per row: concatenated above
            if key in extras and extras[key] is not value:
                raise ValueError(f"concat_rollouts: extras[{key!r}] differs between batches")
            extras[key] = value
    return _build(fields, extras)
