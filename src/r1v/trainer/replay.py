"""``ReplayTrainer``: RePO (Li et al., 2025, "RePO: Replay-Enhanced Policy Optimization") as stage
overrides of the GRPO trainer, the replay baseline of the paper's Fig. 5.

Per generated batch (facts of RePO's ``src/replay_grpo_trainer.py``, ``_generate_and_score_completions``):

``generate_completions``: the base G rollouts per prompt (scored here), then, for each prompt whose
FIFO in the :class:`~r1v.trainer.replay_buffer.ReplayBuffer` holds ``replay_min_cache`` entries,
the rows the strategy retrieves, appended with source ``REPLAY``, the prompt's group id, their
stored rewards and their stored behaviour log-probs. Retrieval precedes the push of this step's
rollouts, so a row is never replayed in the step that sampled it.

``compute_advantages``: ``split`` (RePO's script) standardises the on-policy rows of a prompt among
themselves and its replayed rows among themselves, (r - mean) / (std + eps); ``mixed``
standardises the G + R rows of the prompt together (the base rule).

``compute_old_and_ref_logps``: the base stage, then the behaviour log-probs of the on-policy rows
(RePO computes them after every generation, also with one iteration per batch: one extra
no-grad forward, or the old log-probs when ``num_iterations`` > 1), gathered over all ranks with
their rewards and pushed in rank order. Every rank pushes the same gathered rows in the same
order, so the buffer is identical on every rank (RePO gathers the same way, ``gather_object``).

Loss (:class:`ReplaySurrogate`): the clipped surrogate on every row; replayed rows take the ratio
against their stored behaviour log-probs and weigh ``replay_coef`` (lambda), so with loss_type
'grpo' L = L_on + lambda * L_off where each part sums its rows' token-mean objectives and both
divide by the number of rows of the batch (RePO: ``seq_loss.mean()`` over all rows with the other
part masked out). The KL penalty is paid by on-policy rows only (RePO: ``kl_mask = c_mask *
is_online``); RePO divides that KL by the on-policy token count whatever the loss_type, here it
follows the base loss_type (the same value when beta = 0, RePO's script). With 'bnpo' RePO
divides each part by its own token count, here both by the batch's tokens.

The buffer is saved with the model weights of each checkpoint (``replay_buffer.pt``, inside the
staging folder, so it is published atomically with them) and restored on resume; a checkpoint
without it cannot be resumed by this trainer.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import torch

from r1v.config import GRPOConfig
from r1v.rollout import per_token_logps
from r1v.trainer.batch import PromptBatch, RolloutBatch, RowSource, concat_rollouts
from r1v.trainer.checkpoints import resolve_resume
from r1v.trainer.grpo_math import RowContext, Surrogate, advantages_by_group
from r1v.trainer.grpo_trainer import Qwen2VLGRPOTrainer
from r1v.trainer.replay_buffer import STRATEGIES, ReplayBuffer, ReplayEntry
from r1v.trainer.utils import gather_object_list

logger = logging.getLogger(__name__)

BUFFER_FILE = "replay_buffer.pt"
ADV_NORMS = ("split", "mixed")


@dataclass
class ReplayArguments:
    """RePO switches; defaults are RePO's training script (``scripts/train_replay_grpo.slurm``)."""

    replay_strategy: str = field(
        default="highest_k",
        metadata={"help": f"Which stored rollouts of a prompt are replayed: one of {list(STRATEGIES)} (RePO "
                          f"script: highest_k)."},
    )
    replay_k: int = field(
        default=8, metadata={"help": "k: rollouts replayed per prompt (RePO num_replays; ignored by 'all'). RePO: 8."}
    )
    replay_min_cache: int = field(
        default=16,
        metadata={"help": "A prompt is replayed once its FIFO holds this many rollouts (RePO min_cache_to_replay: 16)."},
    )
    replay_max_cache: int = field(
        default=16,
        metadata={"help": "FIFO size per prompt; the oldest rollout drops out beyond it (RePO max_cache_size: 16)."},
    )
    replay_adv_norm: str = field(
        default="split",
        metadata={"help": "'split': on-policy and replayed rows of a prompt standardised separately (RePO script); "
                          "'mixed': all rows of the prompt together."},
    )
    replay_coef: float = field(
        default=1.0, metadata={"help": "lambda in L = L_on + lambda * L_off (RePO off_policy_loss_coef: 1.0)."}
    )

    def __post_init__(self) -> None:
        if self.replay_strategy not in STRATEGIES:
            raise ValueError(f"replay_strategy: must be one of {list(STRATEGIES)}, got {self.replay_strategy!r}")
        if self.replay_adv_norm not in ADV_NORMS:
            raise ValueError(f"replay_adv_norm: must be one of {list(ADV_NORMS)}, got {self.replay_adv_norm!r}")
        if self.replay_k < 1:
            raise ValueError(f"replay_k: must be >= 1, got {self.replay_k!r}")
        if not 1 <= self.replay_min_cache <= self.replay_max_cache:
            raise ValueError(f"replay_min_cache: must lie in [1, replay_max_cache={self.replay_max_cache}] (else "
                             f"nothing is ever replayed), got {self.replay_min_cache!r}")
        if not 0.0 <= self.replay_coef < float("inf"):  # also rejects NaN
            raise ValueError(f"replay_coef: must be a finite number >= 0, got {self.replay_coef!r}")
        fewest = self.replay_min_cache if self.replay_strategy == "all" else min(self.replay_min_cache, self.replay_k)
        if self.replay_adv_norm == "split" and fewest < 2:
            raise ValueError(f"replay_adv_norm 'split' standardises the replayed rows of a prompt among themselves "
                             f"and needs >= 2 of them: raise replay_k / replay_min_cache (got {fewest})")
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()
        # Per-prompt rules only: a batch-wide scope would all-reduce over ranks whose replayed parts differ.
        if getattr(self, "advantage_scope", "group") != "group":
            raise ValueError(f"advantage_scope: the replay trainer standardises per prompt ('group'), got "
                             f"{self.advantage_scope!r}")


@dataclass
class ReplayConfig(ReplayArguments, GRPOConfig):
    """``GRPOConfig`` plus the ``replay_*`` fields (``ReplayArguments`` first: it validates, then chains)."""


def replay_advantages(rewards: torch.Tensor, group_ids: torch.Tensor, source: torch.Tensor, mode: str,
                      eps: float = 1e-4) -> torch.Tensor:
    """Advantages (N,) of a batch whose groups hold on-policy rows and replayed rows.

    rewards, group_ids, source: (N,). ``mode='mixed'`` standardises each group as a whole;
    ``'split'`` standardises a group's replayed rows (``RowSource.REPLAY``) and its other rows
    separately, each with its own mean and unbiased std: A = (r - mean) / (std + eps) (RePO).
    """
    if mode == "mixed":
        return advantages_by_group(rewards, group_ids, "group", eps)
    if mode != "split":
        raise ValueError(f"unknown replay advantage mode {mode!r} (expected one of {ADV_NORMS})")
    replay = (source == int(RowSource.REPLAY)).to(group_ids.device)
    # Two ids per group: 2g for its on-policy part, 2g + 1 for its replayed part.
    return advantages_by_group(rewards, group_ids * 2 + replay.long(), "group", eps)


class ReplaySurrogate(Surrogate):
    """RePO's pieces: rows of source REPLAY take rho = pi_theta / pi_behaviour (their stored
    ``rows.behaviour_logps``), weigh ``coef`` (lambda) and pay no KL; other rows are GRPO's.
    Clipping to [1 - epsilon_low, 1 + epsilon_high] applies to both (RePO: 0.8-1.2)."""

    def __init__(self, epsilon_low: float, epsilon_high: float, coef: float):
        super().__init__(epsilon_low, epsilon_high)
        self.coef = coef

    def ratio(self, per_token_logps, old_per_token_logps, rows: RowContext) -> torch.Tensor:
        base = super().ratio(per_token_logps, old_per_token_logps, rows)
        if rows.source is None or rows.behaviour_logps is None:
            return base
        replay = (rows.source == int(RowSource.REPLAY)).to(base.device).unsqueeze(1)
        behaviour = torch.exp(per_token_logps - rows.behaviour_logps.to(per_token_logps))
        return torch.where(replay, behaviour, base)

    def row_weights(self, rows: RowContext) -> Optional[torch.Tensor]:
        if rows.source is None:
            return None
        replay = rows.source == int(RowSource.REPLAY)
        return torch.where(replay, torch.full_like(replay, self.coef, dtype=torch.float32), torch.ones_like(
            replay, dtype=torch.float32))

    def penalty_rows(self, rows: RowContext) -> Optional[torch.Tensor]:
        return None if rows.source is None else rows.source != int(RowSource.REPLAY)


class ReplayTrainer(Qwen2VLGRPOTrainer):
    """Qwen2VLGRPOTrainer with RePO's replay; ``args`` must mix in ``ReplayArguments`` (``ReplayConfig``)."""

    def __init__(self, model, reward_funcs, args, train_dataset, **kwargs):
        missing = [f.name for f in dataclasses.fields(ReplayArguments) if not hasattr(args, f.name)]
        if missing:
            raise TypeError(f"ReplayTrainer needs a config with the replay fields (ReplayConfig); missing {missing[:3]}")
        super().__init__(model, reward_funcs, args, train_dataset, **kwargs)
        self.replay_buffer = ReplayBuffer(args.replay_max_cache, args.replay_min_cache, args.replay_strategy,
                                          args.replay_k, seed=args.seed)
        self.warn_if_nothing_replays()

    def warn_if_nothing_replays(self) -> float:
        """Log a warning when the schedule visits a prompt too few times for any replay; returns the
        visits per prompt the schedule makes.

        A prompt is first replayed on visit ceil(replay_min_cache / G) + 1 (its FIFO gains G rows per
        visit, retrieval precedes the push). With 1 epoch (the paper's GRPO schedule) every prompt
        is visited once and RePO reduces to GRPO; RePO's own script trains 3 epochs with
        min_cache 16 and G = 8, so it replays in the third epoch only.
        """
        args = self.args
        block = args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps
        n = len(self.train_dataset)
        visits = args.num_train_epochs if args.max_steps == -1 else args.max_steps * block / max(n, 1)
        needed = -(-args.replay_min_cache // self.num_generations) + 1
        if visits < needed:
            logger.warning("replay: the schedule visits each prompt ~%.2f times, but a prompt is first replayed on "
                           "visit %d (replay_min_cache=%d, num_generations=%d): nothing will be replayed",
                           visits, needed, args.replay_min_cache, self.num_generations)
        return visits

    @staticmethod
    def prompt_key(meta: dict) -> str:
        """The buffer key of a prompt row: its media and its text. RePO keys by the templated text
        alone; video questions repeat across videos, so the media path is part of the key here."""
        rec = meta["record"]
        return json.dumps([rec.get("data_type", "video"), rec.get("path"), meta["prompt_text"]])

    # ------------------------------------------------------------------ stage 2: generate (+ replay)
    def generate_completions(self, prompts: PromptBatch) -> RolloutBatch:
        """The base rollouts, scored, followed by the replayed rows of every prompt that has them."""
        online = super().generate_completions(prompts)
        if online.rewards is None:  # scored here so both parts enter the batch with rewards
            online.rewards = self.score_completions(online)
        rows, entries = [], []
        for b, meta in enumerate(prompts.meta):
            if not meta["valid"]:  # a skipped prompt trains on nothing, replayed rows included
                continue
            picked = self.replay_buffer.retrieve(self.prompt_key(meta))
            rows += [b] * len(picked)
            entries += picked
        valid_prompts = sum(bool(m["valid"]) for m in prompts.meta)
        self.metrics.add("replay/rows_per_prompt", len(entries) / max(valid_prompts, 1))
        if not entries:
            return online
        replay = self.replay_rollouts(prompts, rows, entries)
        self.metrics.add("replay/reward", replay.rewards.float().mean().item())
        return concat_rollouts(online, replay)

    def replay_rollouts(self, prompts: PromptBatch, rows: list[int], entries: list[ReplayEntry]) -> RolloutBatch:
        """Rows (R) of stored ``entries``, row i joining prompt row ``rows[i]`` (its group id).

        Built directly rather than by ``make_rollouts``: nothing is sampled, so the sampled-token
        count stays untouched, and the stored text, rewards and log-probs are kept as they are.
        """
        device = self.accelerator.device
        width = max(e.completion_ids.numel() for e in entries)
        ids = torch.full((len(entries), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(entries), width), dtype=torch.long)
        logps = torch.zeros((len(entries), width), dtype=torch.float32)
        for i, e in enumerate(entries):
            n = e.completion_ids.numel()
            ids[i, :n], mask[i, :n], logps[i, :n] = e.completion_ids, 1, e.behaviour_logps
        return RolloutBatch(
            prompts.select(rows), ids.to(device), mask.to(device), [e.text for e in entries],
            rewards=torch.stack([e.rewards for e in entries]).to(device),
            valid=torch.ones(len(entries), dtype=torch.bool, device=device),
            group_ids=torch.tensor(rows, dtype=torch.long, device=device),
            source=torch.full((len(entries),), int(RowSource.REPLAY), dtype=torch.long, device=device),
            behaviour_logps=logps.to(device),
        )

    # ------------------------------------------------------------------ stage 4: advantages
    def compute_advantages(self, rollouts: RolloutBatch) -> torch.Tensor:
        """``replay_advantages`` of the scalar rewards (mode ``replay_adv_norm``)."""
        return replay_advantages(rollouts.reward, rollouts.group_ids, rollouts.source, self.args.replay_adv_norm,
                                 self.args.advantage_eps)

    # ------------------------------------------------------------------ stage 5: log-probs (+ push)
    def compute_old_and_ref_logps(self, rollouts: RolloutBatch) -> None:
        """The base stage, then push the on-policy rows with their behaviour log-probs (collective)."""
        super().compute_old_and_ref_logps(rollouts)
        on = (rollouts.source.cpu() == int(RowSource.ON_POLICY)).nonzero().flatten()
        if rollouts.old_per_token_logps is not None:  # num_iterations > 1: already the sampling policy's
            behaviour = rollouts.old_per_token_logps[on.to(rollouts.old_per_token_logps.device)]
        else:
            online = rollouts.select(on)
            with torch.no_grad():
                behaviour = per_token_logps(self.model_wrapped, online.forward_inputs(), online.completion_ids,
                                            self.args.temperature)
        items = []
        lengths = rollouts.completion_mask.sum(dim=1).cpu()
        for j, row in enumerate(on.tolist()):
            if not bool(rollouts.valid[row]):
                continue  # a skipped prompt's placeholder rollout is not a sample worth replaying
            n = int(lengths[row])
            items.append((self.prompt_key(rollouts.prompts.meta[row]), ReplayEntry(
                rollouts.completion_ids[row, :n].cpu(), behaviour[j, :n].detach().float().cpu(),
                rollouts.rewards[row].detach().float().cpu(), float(rollouts.reward[row]),
                rollouts.completions_text[row])))
        for rank_items in gather_object_list(self.accelerator, items):  # rank order: the same on every rank
            self.replay_buffer.push_all(rank_items)
        self.metrics.add("replay/buffer_entries", len(self.replay_buffer))

    # ------------------------------------------------------------------ loss and metrics
    def surrogate(self) -> Surrogate:
        return ReplaySurrogate(self.args.epsilon, self.args.epsilon_high, self.args.replay_coef)

    def record_rollout_metrics(self, rollouts: RolloutBatch) -> None:
        """The base metrics of the on-policy rows only, so reward curves compare with GRPO's."""
        on = (rollouts.source.cpu() == int(RowSource.ON_POLICY)).nonzero().flatten()
        super().record_rollout_metrics(rollouts.select(on) if on.numel() < len(rollouts.completions_text)
                                       else rollouts)

    # ------------------------------------------------------------------ checkpoints
    def save_model(self, output_dir: Optional[str] = None, _internal_call: bool = False) -> None:
        """The weights, and in a checkpoint (``_internal_call``) the replay buffer beside them."""
        super().save_model(output_dir, _internal_call=_internal_call)
        if _internal_call and self.args.should_save:
            folder = output_dir or self.args.output_dir
            torch.save(self.replay_buffer.state_dict(), os.path.join(folder, BUFFER_FILE))

    def train(self, resume_from_checkpoint=None, trial=None, **kwargs):
        """``Trainer.train``; on resume the replay buffer of the checkpoint is restored first."""
        folder = resolve_resume(resume_from_checkpoint, self.args.output_dir, not self.args.save_only_model)
        if folder is not None:
            self.load_replay_buffer(folder)
        return super().train(resume_from_checkpoint=folder, trial=trial, **kwargs)

    def load_replay_buffer(self, folder: str) -> None:
        """Restore the buffer saved in checkpoint ``folder``; FileNotFoundError when it holds none."""
        path = os.path.join(folder, BUFFER_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is missing: checkpoint {folder} was not written by the replay trainer")
        self.replay_buffer.load_state_dict(torch.load(path, weights_only=True))
        logger.info("restored the replay buffer (%d entries) from %s", len(self.replay_buffer), folder)
