"""``Qwen2VLGRPOTrainer``: R1-V's GRPO trainer for Qwen2.5-VL / Qwen3-VL on video, in named stages.

One optimizer step on a batch of B prompts per device (paper Eq. 1-2, 9-11):

    build_prompts -> generate_completions -> score_completions -> combine_rewards
    -> compute_advantages -> compute_old_and_ref_logps   (once per generated batch)
    -> compute_loss                                       (num_iterations times)

A subclass overrides one stage (FFR overrides generation and reward combination); the
rules that let such variants stack are in the docstring of ``r1v.trainer.batch``.
Every rank runs the same stages with the same number of ``generate`` calls and
forwards, which is what keeps DeepSpeed ZeRO-3 from deadlocking.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Callable, Optional, Union

import torch
from PIL import Image
from transformers import AutoProcessor, PreTrainedModel, Trainer

from r1v import rewards as rewards_module
from r1v.config import GRPOConfig
from r1v.inputs import encode_prompts, make_dummy_visual, patch_factor_of, vision_token_ids
from r1v.prompts import build_prompt_text
from r1v.rollout import SamplingParams, dummy_generate, generate_rollouts, per_token_logps
from r1v.trainer.batch import PromptBatch, RolloutBatch, RowSource
from r1v.trainer.checkpoints import AtomicCheckpointMixin
from r1v.trainer.grpo_math import (
    RowContext, Surrogate, advantages_by_group, all_reduce_sum, completion_mask_from_eos, contiguous_group_ids,
    surrogate_loss,
)
from r1v.trainer.utils import (
    MetricStore, RecordDataset, completion_ended, RepeatBlockSampler, SkipMonitor, StageTimer, gather_object_list, identity_collator,
    load_student, merge_metric_states, prepare_deepspeed_reference, prepare_student, rollout_reward_metrics,
    completion_samples, write_jsonl,
)
from r1v.vision import VisionConfig, load_image, load_video

logger = logging.getLogger(__name__)

RewardFunc = Callable[..., list[float]]

class Qwen2VLGRPOTrainer(AtomicCheckpointMixin, Trainer):
    """GRPO for Qwen-VL video students (R1-V semantics, Video-R1 video inputs).

    model: a checkpoint path / hub id, or a loaded model (then ``ref_model`` may be given).
    reward_funcs: names in ``r1v.rewards.REWARD_FUNCS`` or callables
        ``fn(completions: list[str], **columns) -> list[float]``; columns are the records'
        fields, each repeated G times to align with the completions, plus the rows'
        ``group_id`` and ``row_source`` (group-level rewards read them; a value of NaN marks a
        row left unscored). A returned ``r1v.rewards.RewardValues`` also carries metrics to log.
    train_dataset: a list of Video-R1 records (absolute media ``path``) or a map dataset of them.
    """

    def __init__(
        self,
        model: Union[str, PreTrainedModel],
        reward_funcs: list[Union[str, RewardFunc]],
        args: GRPOConfig,
        train_dataset,
        processing_class=None,
        ref_model: Optional[PreTrainedModel] = None,
        vision_config: Optional[VisionConfig] = None,
        reward_weights: Optional[list[float]] = None,
        callbacks=None,
        optimizers=(None, None),
        torch_dtype: str = "bfloat16",
        attn_implementation: str = "sdpa",
        freeze_vision_tower: bool = False,
    ):
        model, model_id = prepare_student(model, torch_dtype, attn_implementation, freeze_vision_tower,
                                          args.activation_checkpointing)
        if processing_class is None:
            processing_class = AutoProcessor.from_pretrained(model_id)
        if args.beta != 0.0 and ref_model is None:
            ref_model = load_student(model_id, torch_dtype, attn_implementation)
        self.ref_model = ref_model
        if self.ref_model is not None:
            self.ref_model.requires_grad_(False)

        self.reward_funcs, self.reward_names = self._resolve_rewards(reward_funcs)
        weights = reward_weights if reward_weights is not None else [1.0] * len(self.reward_funcs)
        if len(weights) != len(self.reward_funcs):
            raise ValueError(f"{len(weights)} reward_weights for {len(self.reward_funcs)} reward_funcs")
        self.reward_weights = torch.tensor(weights, dtype=torch.float32)
        self.vision_config = vision_config or VisionConfig()
        factor = patch_factor_of(processing_class)
        if self.vision_config.patch_factor != factor:  # 28 for Qwen2.5-VL, 32 for Qwen3-VL: follow the checkpoint
            self.vision_config = dataclasses.replace(self.vision_config, patch_factor=factor)
        self.num_generations = args.num_generations
        if not isinstance(train_dataset, torch.utils.data.Dataset):
            train_dataset = RecordDataset(train_dataset)

        super().__init__(
            model=model, args=args, data_collator=identity_collator, train_dataset=train_dataset,
            processing_class=processing_class, callbacks=callbacks, optimizers=optimizers,
        )
        # Our loss is already a mean; the Trainer must not rescale it by token counts.
        self.model_accepts_loss_kwargs = False
        # Completion tokens sampled on this rank since the start (every generate that makes rollouts:
        # variants that generate more per step, like FFR's second round, count here too).
        self.generated_tokens = 0
        if self.ref_model is not None:
            if self.is_deepspeed_enabled:
                self.ref_model = prepare_deepspeed_reference(self.ref_model, self.accelerator)
            else:
                self.ref_model = self.accelerator.prepare_model(self.ref_model, evaluation_mode=True)

        tokenizer = processing_class.tokenizer
        self.pad_token_id = tokenizer.pad_token_id
        self.eos_token_ids = sorted({tokenizer.eos_token_id, *self._generation_eos_ids(model)})
        self.suppress_ids = vision_token_ids(processing_class)
        self.sampling = SamplingParams(
            max_new_tokens=args.max_completion_length, temperature=args.temperature, top_p=args.top_p,
            top_k=args.top_k, repetition_penalty=args.repetition_penalty, num_return_sequences=args.num_generations,
        )
        self.timer = StageTimer()
        self.metrics = MetricStore()
        self._buffer: list[Optional[RolloutBatch]] = [None] * args.gradient_accumulation_steps
        self._micro_step = 0
        self._last_samples: list[dict] = []
        self._dummy_inputs: Optional[dict] = None
        self.skip_monitor = SkipMonitor(args.skipped_prompts_max_frac, args.skipped_prompts_patience)

    # ------------------------------------------------------------------ setup helpers
    @staticmethod
    def _resolve_rewards(reward_funcs) -> tuple[list[RewardFunc], list[str]]:
        funcs, names = [], []
        for rf in reward_funcs:
            if isinstance(rf, str):
                if rf not in rewards_module.REWARD_FUNCS:
                    raise ValueError(f"unknown reward function {rf!r}; known: {sorted(rewards_module.REWARD_FUNCS)}")
                funcs.append(rewards_module.REWARD_FUNCS[rf])
                names.append(rf)
            else:
                funcs.append(rf)
                names.append(getattr(rf, "__name__", f"reward_{len(names)}"))
        if not funcs:
            raise ValueError("at least one reward function is required")
        return funcs, names

    @staticmethod
    def _generation_eos_ids(model) -> list[int]:
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        if eos is None:
            return []
        return [eos] if isinstance(eos, int) else list(eos)

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        block = self.args.per_device_train_batch_size * self.accelerator.num_processes * self.args.gradient_accumulation_steps
        groups = [r.get("data_type", "video") for r in dataset.records] if isinstance(dataset, RecordDataset) else None
        sampler = RepeatBlockSampler(len(dataset), block, self.args.num_iterations, shuffle=True, seed=self.args.seed,
                                     groups=groups)
        if len(sampler) == 0:  # the Trainer would otherwise run zero (or endless empty) epochs
            raise ValueError(f"the training data ({len(dataset)} records) fills no global batch of {block} prompts "
                             f"of one data_type (per_device_train_batch_size x processes x "
                             f"gradient_accumulation_steps); nothing to train on")
        return sampler

    # ------------------------------------------------------------------ stage 1: prompts
    def build_prompts(self, records: list[dict]) -> PromptBatch:
        """Load each record's visual, render its prompt text and encode all rows in one processor call.

        A record whose media fails to decode, or whose prompt exceeds ``max_prompt_length``,
        is replaced by a tiny placeholder of its own modality and marked ``valid=False`` (zero
        reward and loss), so this rank still makes the same calls as the others; the skip is
        logged and counted in ``data/skipped_media`` / ``data/skipped_too_long``.
        """
        texts, visuals, meta = [], [], []
        for rec in records:
            valid = True
            try:
                visual = self._load_visual(rec)
            except (OSError, ValueError, RuntimeError) as err:
                logger.warning("skipping media of problem_id=%s (%s): %s", rec.get("problem_id"), rec.get("path"), err)
                visual, valid = self._placeholder_visual(rec), False
            texts.append(self.prompt_text(rec))
            visuals.append(visual)
            timestamps = list(getattr(visual, "timestamps", []) or [])
            meta.append({"record": rec, "prompt_text": texts[-1], "visual": visual, "timestamps": timestamps, "valid": valid})
        self.metrics.add("data/skipped_media", sum(not m["valid"] for m in meta))
        batch = self.encode(texts, visuals, meta)
        too_long = self._too_long_rows(batch)
        if too_long:  # same treatment as a broken video: skipped here, lock-step kept with the other ranks
            for i in too_long:
                visuals[i], texts[i], meta[i]["valid"] = self._placeholder_visual(meta[i]["record"]), ".", False
            batch = self.encode(texts, visuals, meta)
        self.metrics.add("data/skipped_too_long", len(too_long))
        self.skip_monitor.check(self.accelerator, sum(not m["valid"] for m in meta), len(meta))
        return batch

    def _too_long_rows(self, batch: PromptBatch) -> list[int]:
        """Rows whose prompt (visual tokens included) exceeds ``max_prompt_length``; each is logged."""
        limit = self.args.max_prompt_length
        if limit is None:
            return []
        lengths = batch.attention_mask.sum(dim=1).tolist()
        rows = [i for i, n in enumerate(lengths) if n > limit]
        for i in rows:
            logger.warning("skipping problem_id=%s: prompt of %d tokens exceeds max_prompt_length=%d",
                           batch.meta[i]["record"].get("problem_id"), lengths[i], limit)
        return rows

    def prompt_text(self, record: dict) -> str:
        """User text of a record's prompt (Video-R1 reasoning template)."""
        return build_prompt_text(record)

    def _placeholder_visual(self, rec: dict):
        """A tiny visual of the record's own modality, so this rank's vision-tower calls match its peers'."""
        if rec.get("data_type", "video") == "image":
            side = 2 * self.vision_config.patch_factor
            return Image.new("RGB", (side, side))
        return make_dummy_visual(self.vision_config)

    def _load_visual(self, rec: dict):
        if rec.get("data_type", "video") == "image":
            return load_image(rec["path"], self.vision_config)
        return load_video(rec["path"], self.vision_config)

    def encode(self, texts: list[str], visuals: list, meta: list[dict], extra_images=None) -> PromptBatch:
        """Encode prompt rows (one visual each, plus optional extra images) into a PromptBatch on device."""
        encoded = encode_prompts(self.processing_class, texts, visuals, extra_images=extra_images,
                                 vision_cfg=self.vision_config)
        n_extra = [len(x) for x in extra_images] if extra_images else [0] * len(texts)
        counts = {
            "video": [0 if _is_image(v) else 1 for v in visuals],
            "image": [(1 if _is_image(v) else 0) + k for v, k in zip(visuals, n_extra)],
        }
        batch = PromptBatch.from_encoded(encoded, counts, meta, self.pad_token_id)
        return batch.to(self.accelerator.device)

    # ------------------------------------------------------------------ stage 2: generate
    def generate_completions(self, prompts: PromptBatch) -> RolloutBatch:
        """G sampled rollouts per prompt; rows of the result are group-major (B*G), group id = prompt row."""
        completion_ids = generate_rollouts(
            self.model_wrapped, self.accelerator, prompts.model_inputs(), self.sampling, self.pad_token_id,
            self.eos_token_ids, self.suppress_ids, gather_weights=self.args.ds3_gather_for_generation,
        )
        rows = torch.arange(len(prompts)).repeat_interleave(self.num_generations)
        return self.make_rollouts(prompts.select(rows), completion_ids, group_ids=rows)

    def make_rollouts(self, prompts: PromptBatch, completion_ids: torch.Tensor, group_ids: Optional[torch.Tensor] = None,
                      source: RowSource = RowSource.ON_POLICY) -> RolloutBatch:
        """Mask each completion after its first EOS, decode it and attach row validity, group ids
        (R,) long (None: not set) and one ``source`` for every row."""
        mask = completion_mask_from_eos(completion_ids, self.eos_token_ids)
        valid = torch.tensor([m["valid"] for m in prompts.meta], dtype=torch.bool, device=mask.device)
        mask = mask * valid.unsqueeze(1).to(mask.dtype)
        self.generated_tokens += int(mask.sum())
        texts = self.processing_class.batch_decode(completion_ids * mask + self.pad_token_id * (1 - mask),
                                                   skip_special_tokens=True)
        return RolloutBatch(prompts, completion_ids, mask, texts, valid=valid,
                            group_ids=None if group_ids is None else group_ids.to(mask.device),
                            source=torch.full_like(valid, int(source), dtype=torch.long))

    def run_dummy_generate(self) -> None:
        """Match another rank's extra ``generate`` call without producing rollouts (ZeRO-3 rule)."""
        if self._dummy_inputs is None:
            dummy = make_dummy_visual(self.vision_config)
            meta = [{"record": {"problem_id": "dummy"}, "valid": False}]
            self._dummy_inputs = self.encode(["."], [dummy], meta).model_inputs()
        dummy_generate(self.model_wrapped, self.accelerator, self._dummy_inputs, self.pad_token_id,
                       self.eos_token_ids, self.suppress_ids, gather_weights=self.args.ds3_gather_for_generation)

    # ------------------------------------------------------------------ stage 3: score
    def score_completions(self, rollouts: RolloutBatch) -> torch.Tensor:
        """Rewards (N, F): each reward function on every completion; invalid rows score 0, NaN
        (unscored) is kept and left out of the group statistics (``advantages_by_group``)."""
        records = [m["record"] for m in rollouts.prompts.meta]
        columns = {k: [r.get(k) for r in records] for k in records[0]} if records else {}
        columns["row_source"] = rollouts.source.tolist()
        if rollouts.group_ids is not None:
            columns["group_id"] = rollouts.group_ids.tolist()
        out = torch.zeros(len(rollouts.completions_text), len(self.reward_funcs))
        for j, fn in enumerate(self.reward_funcs):
            values = fn(rollouts.completions_text, **columns)
            if len(values) != len(rollouts.completions_text):
                raise ValueError(f"reward {self.reward_names[j]!r} returned {len(values)} values for "
                                 f"{len(rollouts.completions_text)} completions")
            out[:, j] = torch.tensor([float(v) for v in values])
            for name, (value, weight) in getattr(values, "metrics", {}).items():
                self.metrics.add(name, value, weight)
        out[~rollouts.valid.cpu()] = 0.0
        return out.to(self.accelerator.device)

    def combine_rewards(self, rollouts: RolloutBatch, columns: Optional[list[int]] = None) -> torch.Tensor:
        """Scalar reward per rollout (N,): the weighted sum of the reward functions (Eq. 1), of those
        at indices ``columns`` when given (a variant that replaces the others passes the rest here)."""
        if columns is None:
            return (rollouts.rewards * self.reward_weights.to(rollouts.rewards.device)).sum(dim=1)
        return (rollouts.rewards[:, columns] * self.reward_weights[columns].to(rollouts.rewards.device)).sum(dim=1)

    # ------------------------------------------------------------------ stage 4: advantages
    def compute_advantages(self, rollouts: RolloutBatch) -> torch.Tensor:
        """Standardised advantages (N,) of the scalar rewards within each group id (Eq. 2 / Eq. 9); scope
        'batch' all-reduces mean/std over every rank's rollouts (every rank runs this stage)."""
        return advantages_by_group(rollouts.reward, rollouts.group_ids, self.args.advantage_scope,
                                   self.args.advantage_eps, reduce_sum=all_reduce_sum)

    # ------------------------------------------------------------------ stage 5: log-probs
    def compute_old_and_ref_logps(self, rollouts: RolloutBatch) -> None:
        """Store log pi_old (only when num_iterations > 1) and log pi_ref (when beta != 0)."""
        inputs = rollouts.forward_inputs()
        with torch.no_grad():
            if self.args.num_iterations > 1:
                rollouts.old_per_token_logps = per_token_logps(
                    self.model_wrapped, inputs, rollouts.completion_ids, self.args.temperature)
            if self.ref_model is not None:
                rollouts.ref_per_token_logps = per_token_logps(
                    self.ref_model, inputs, rollouts.completion_ids, self.args.temperature)

    # ------------------------------------------------------------------ orchestration
    def generate_and_score(self, records: list[dict]) -> RolloutBatch:
        """Stages 1-5 for one generated batch."""
        with self.timer("prompts"):
            prompts = self.build_prompts(records)
        with self.timer("generate"):
            rollouts = self.generate_completions(prompts)
        with self.timer("score"):
            if rollouts.rewards is None:
                rollouts.rewards = self.score_completions(rollouts)
            rollouts.reward = self.combine_rewards(rollouts)
            rollouts.advantages = self.compute_advantages(rollouts)
        with self.timer("logps_old_ref"):
            self.compute_old_and_ref_logps(rollouts)
        self.record_rollout_metrics(rollouts)
        return rollouts

    def _prepare_inputs(self, records: list[dict]) -> RolloutBatch:
        """Generate once per ``num_iterations`` optimizer steps; reuse the stored batch in between."""
        accum = self.args.gradient_accumulation_steps
        slot = self._micro_step % accum
        if not self.model.training:
            return self.generate_and_score(records)
        if (self._micro_step // accum) % self.args.num_iterations == 0 or self._buffer[slot] is None:
            self._buffer[slot] = self.generate_and_score(records)
        self._micro_step += 1
        return self._buffer[slot]

    # ------------------------------------------------------------------ stage 6: loss
    def compute_loss(self, model, inputs: RolloutBatch, return_outputs=False, num_items_in_batch=None):
        if return_outputs:
            raise ValueError("Qwen2VLGRPOTrainer.compute_loss does not return model outputs")
        rollouts = inputs
        with self.timer("policy_forward"):
            logps = per_token_logps(model, rollouts.forward_inputs(), rollouts.completion_ids, self.args.temperature)
            out = surrogate_loss(
                logps, rollouts.old_per_token_logps, rollouts.ref_per_token_logps, rollouts.advantages,
                rollouts.completion_mask, self.args.beta, self.surrogate(),
                RowContext(rollouts.source, rollouts.behaviour_logps), self.args.loss_type,
                max_completion_length=self.args.max_completion_length,
            )
        if out.kl is not None:
            self.metrics.add("kl", out.kl.item())
        self.metrics.add("clip_ratio", out.clip_fraction.item())
        self.metrics.add("ratio_mean", out.ratio_mean.item())
        return out.loss

    def surrogate(self) -> Surrogate:
        """Pieces of the per-token objective (ratio, shape, clip); a variant returns a subclass."""
        return Surrogate(self.args.epsilon, self.args.epsilon_high)

    # ------------------------------------------------------------------ metrics and logs
    def record_rollout_metrics(self, rollouts: RolloutBatch) -> None:
        """Rewards per function, reward std, zero-std groups, completion lengths, timings."""
        # extras["reward"] is where ``reward`` is stored; reading it there, and taking the plain layout
        # of groups of G when there are no ids, lets any object with RolloutBatch's attributes be passed.
        reward = rollouts.extras["reward"].float()
        ids = getattr(rollouts, "group_ids", None)
        if ids is None:
            ids = contiguous_group_ids(reward.numel(), self.num_generations, reward.device)
        ended = completion_ended(rollouts.completion_ids, rollouts.completion_mask, self.eos_token_ids)
        for name, value, weight in rollout_reward_metrics(reward, rollouts.rewards, rollouts.valid,
                                                          rollouts.completion_mask, ids, self.reward_names, ended):
            self.metrics.add(name, value, weight)
        self.metrics.add_many(self.timer.pop())
        self._last_samples = completion_samples(rollouts.prompts.meta, rollouts.completions_text, reward,
                                                rollouts.rewards, self.reward_names, self.args.num_completions_to_print)

    def log(self, logs: dict[str, float], start_time: Optional[float] = None) -> None:
        """Add the stage metrics (averaged over steps and ranks) to the Trainer's logs."""
        self.metrics.add_many(self.timer.pop())
        states = gather_object_list(self.accelerator, self.metrics.state())
        self.metrics.clear()
        logs = {**logs, **merge_metric_states(states)}
        if self.args.log_completions and self.accelerator.is_main_process and self._last_samples:
            write_jsonl(os.path.join(self.args.output_dir, "completions", f"step_{self.state.global_step:06d}.jsonl"),
                        self._last_samples)
        super().log(logs, start_time)


def _is_image(visual: Any) -> bool:
    return not hasattr(visual, "frames")
