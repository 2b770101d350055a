"""``LuffyTrainer``: LUFFY (Yan et al., 2025) as stage overrides of the GRPO trainer (paper Fig. 5 baseline).

LUFFY mixes off-policy teacher traces into each GRPO group. As in its released code
(ElliottYan/LUFFY, ``luffy/verl/verl/mix_src/``, script ``exp_scripts/train.sh``):

* groups: ``num_generations`` = G rows per prompt (rollout.n = 8), of which ``luffy_num_traces`` = k
  are teacher traces (n_prefix = 1, prefix ratio 1.0: one whole trace; the first k records of the
  prompt's problem_id, fewer when the file holds fewer) and G - k are sampled from the policy. A trace is the teacher's full answer to the prompt, tokenised with the
  student's tokenizer, ended by the end-of-turn token and cut at ``max_completion_length``
  (LUFFY: ``max_prefix_len`` = the response length), and scored by the same reward functions.
  Traces come from a JSONL in the output format of ``python -m r1v.teacher_traces`` (SFT
  records: ``problem_id``, ``process`` = ``<think>..</think>``, ``solution``); the trace text is
  ``r1v.sft_data.sft_target`` of the record, the exact SFT target. A prompt with no trace in the
  file gets only its G - k on-policy rows (counted in ``luffy/missing_traces``).
* advantages over the mixed group, or ``luffy_advantage=split`` (statistics from on-policy rows);
  ``luffy_std_normalize`` switches the division by the std (``r1v.trainer.luffy_math``).
* loss: on-policy tokens the clipped GRPO surrogate (``luffy_clip_on_policy``), teacher tokens
  -A * f(pi_theta), f(p) = p / (p + ``luffy_gamma``), unclipped (``LuffySurrogate``); KL off
  (``beta`` 0); optional entropy bonus ``luffy_entropy_coeff`` (loss - coeff * token-mean entropy).

Paper vs released code. The paper's advantage divides by std over the mixed group; the released
script sets ``grpo_use_std=False`` (no division) and ``loss_remove_clip=True`` (no PPO clip on
on-policy tokens), ``entropy_coeff=0.001`` and normalises the token sum by the padded length
(``loss_remove_token_mean=True``). The defaults here follow the paper (std on, clip on, no entropy
bonus, the base ``loss_type``); ``--luffy_std_normalize false --luffy_clip_on_policy false
--luffy_entropy_coeff 0.001 --loss_type dr_grpo`` gives the released script's choices.

Distributed rule: traces add rows but no ``generate`` call, so ranks stay in lock-step under
ZeRO-3 even when their prompts have different numbers of traces.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Optional

import torch

from r1v.config import GRPOConfig
from r1v.data import json_records
from r1v.sft_data import END_OF_TURN, sft_target
from r1v.trainer.batch import PromptBatch, RolloutBatch, RowSource, concat_rollouts
from r1v.trainer.grpo_math import Surrogate, masked_mean
from r1v.trainer.grpo_trainer import Qwen2VLGRPOTrainer
from r1v.trainer.luffy_math import ADVANTAGE_MODES, LuffySurrogate, luffy_advantages, token_entropy

logger = logging.getLogger(__name__)


@dataclass
class LuffyArguments:
    """LUFFY switches; defaults follow the LUFFY paper (see the module docstring for the released script)."""

    luffy_traces: Optional[str] = field(
        default=None,
        metadata={"help": "JSONL of teacher traces (output of python -m r1v.teacher_traces: problem_id, process, "
                          "solution). Required."},
    )
    luffy_num_traces: int = field(
        default=1,
        metadata={"help": "k: teacher traces per prompt; they take k of the num_generations rows of its group "
                          "(LUFFY: 1 of 8)."},
    )
    luffy_gamma: float = field(
        default=0.1, metadata={"help": "gamma of the off-policy shaping f(p) = p / (p + gamma) (LUFFY: 0.1)."}
    )
    luffy_advantage: str = field(
        default="mixed",
        metadata={"help": "'mixed': group statistics over on-policy rows and traces (LUFFY grpo); 'split': from "
                          "the on-policy rows only (LUFFY grpo_split)."},
    )
    luffy_std_normalize: bool = field(
        default=True,
        metadata={"help": "Divide advantages by the group std (paper). The released script sets "
                          "grpo_use_std=False: pass false to follow it."},
    )
    luffy_clip_on_policy: bool = field(
        default=True,
        metadata={"help": "PPO clip on on-policy tokens (paper). The released script sets loss_remove_clip=True: "
                          "pass false to follow it. Teacher tokens are never clipped."},
    )
    luffy_entropy_coeff: float = field(
        default=0.0,
        metadata={"help": "Entropy bonus: loss - coeff x token-mean entropy of all completion tokens "
                          "(released script: 0.001; 0 = off)."},
    )
    beta: float = field(
        default=0.0,
        metadata={"help": "KL coefficient to the frozen reference; LUFFY runs without KL (0 = no reference model)."},
    )

    def __post_init__(self) -> None:
        if self.luffy_num_traces < 1:
            raise ValueError(f"luffy_num_traces: must be >= 1, got {self.luffy_num_traces!r}")
        on_policy = getattr(self, "num_generations", 8) - self.luffy_num_traces
        if on_policy < 2:
            raise ValueError(f"luffy_num_traces: num_generations - luffy_num_traces on-policy rows must be >= 2 "
                             f"(a group needs 2 rows for its std), got {on_policy}")
        if not self.luffy_gamma > 0:  # NaN fails too
            raise ValueError(f"luffy_gamma: must be > 0, got {self.luffy_gamma!r}")
        if self.luffy_advantage not in ADVANTAGE_MODES:
            raise ValueError(f"luffy_advantage: must be one of {list(ADVANTAGE_MODES)}, got {self.luffy_advantage!r}")
        if not self.luffy_entropy_coeff >= 0:
            raise ValueError(f"luffy_entropy_coeff: must be >= 0, got {self.luffy_entropy_coeff!r}")
        if getattr(self, "advantage_scope", "group") != "group":
            raise ValueError("advantage_scope: LUFFY standardises per prompt group; must be 'group'")
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()


@dataclass
class LuffyConfig(LuffyArguments, GRPOConfig):
    """``GRPOConfig`` plus the ``luffy_*`` fields (``LuffyArguments`` first: it validates, then chains)."""


def load_traces(path: str) -> dict[str, list[str]]:
    """Trace texts by ``str(problem_id)``, in file order (several records of one id: several traces).

    Each record is an SFT record of ``r1v.teacher_traces``; its text is ``sft_target`` (which
    raises ValueError naming the problem_id on a malformed ``process`` / ``solution``). Raises
    ValueError on a record without ``problem_id`` and on a file without traces.
    """
    traces: dict[str, list[str]] = {}
    for where, rec in json_records(path):
        if not isinstance(rec, dict) or rec.get("problem_id") is None:
            raise ValueError(f"{where}: a trace record needs a problem_id")
        traces.setdefault(str(rec["problem_id"]), []).append(sft_target(rec))
    if not traces:
        raise ValueError(f"{path}: no teacher trace")
    return traces


class LuffyTrainer(Qwen2VLGRPOTrainer):
    """Qwen2VLGRPOTrainer with LUFFY; ``args`` must mix in ``LuffyArguments`` (``LuffyConfig``)."""

    def __init__(self, model, reward_funcs, args, train_dataset, **kwargs):
        missing = [f.name for f in dataclasses.fields(LuffyArguments) if not hasattr(args, f.name)]
        if missing:
            raise TypeError(f"LuffyTrainer needs a config with the LUFFY fields (LuffyConfig); missing {missing[:3]}")
        if not args.luffy_traces:
            raise ValueError("luffy_traces: LUFFY needs a JSONL of teacher traces (python -m r1v.teacher_traces)")
        traces = load_traces(args.luffy_traces)
        super().__init__(model, reward_funcs, args, train_dataset, **kwargs)
        tokenizer = self.processing_class.tokenizer
        self.end_of_turn = tokenizer.convert_tokens_to_ids(END_OF_TURN)
        if self.end_of_turn is None or self.end_of_turn == getattr(tokenizer, "unk_token_id", None):
            raise ValueError(f"tokenizer lacks the end-of-turn token {END_OF_TURN}")
        # Whole traces, end-of-turn included, tokenised once; cut per step (see trace_rollouts).
        self.trace_ids = {pid: [tokenizer(t, add_special_tokens=False)["input_ids"] + [self.end_of_turn]
                                for t in texts[:args.luffy_num_traces]] for pid, texts in traces.items()}
        # The group keeps num_generations rows: k of them are traces, G - k are sampled.
        self.num_generations = args.num_generations - args.luffy_num_traces
        self.sampling = dataclasses.replace(self.sampling, num_return_sequences=self.num_generations)

    # ------------------------------------------------------------------ stage 2: generate
    def generate_completions(self, prompts: PromptBatch) -> RolloutBatch:
        """The G - k sampled rollouts per prompt (base stage), then the prompts' trace rows.

        Trace rows come last, with source TEACHER, the group id of their prompt (= prompt row)
        and ``behaviour_logps`` 0 (teacher probability taken as 1, as LUFFY does).
        """
        rollouts = super().generate_completions(prompts)
        teacher = self.trace_rollouts(prompts)
        return rollouts if teacher is None else concat_rollouts(rollouts, teacher)

    def trace_rollouts(self, prompts: PromptBatch) -> Optional[RolloutBatch]:
        """Rows of the teacher traces of ``prompts`` (None when no prompt has one).

        A prompt whose problem_id has no trace is counted in ``luffy/missing_traces``; a trace
        longer than ``max_completion_length`` is cut there (losing its end-of-turn token, like
        a sampled rollout that hit the cap) and counted in ``luffy/truncated_traces``.
        """
        rows, ids, missing = [], [], 0
        for b, meta in enumerate(prompts.meta):
            found = self.trace_ids.get(str(meta["record"].get("problem_id")))
            if not found:
                missing += 1
                continue
            for trace in found:
                rows.append(b)
                ids.append(trace)
        self.metrics.add("luffy/missing_traces", missing)
        cap = self.args.max_completion_length
        self.metrics.add("luffy/truncated_traces", sum(len(t) > cap for t in ids))
        if not rows:
            return None
        ids = [t[:cap] for t in ids]
        width = max(len(t) for t in ids)
        completion_ids = torch.full((len(ids), width), self.pad_token_id, dtype=torch.long)
        for i, t in enumerate(ids):
            completion_ids[i, :len(t)] = torch.tensor(t, dtype=torch.long)
        row_index = torch.tensor(rows, dtype=torch.long)
        before = self.generated_tokens
        teacher = self.make_rollouts(prompts.select(row_index), completion_ids.to(self.accelerator.device),
                                     group_ids=row_index, source=RowSource.TEACHER)
        self.generated_tokens = before  # counts sampled tokens only; traces are read, not generated
        teacher.behaviour_logps = torch.zeros(completion_ids.shape, dtype=torch.float32,
                                              device=teacher.completion_mask.device)
        self.metrics.add("luffy/trace_length", teacher.completion_mask.sum(dim=1).float().mean().item())
        return teacher

    # ------------------------------------------------------------------ stage 4: advantages
    def compute_advantages(self, rollouts: RolloutBatch) -> torch.Tensor:
        """LUFFY's advantages (N,) over each prompt's mixed group (``luffy_math.luffy_advantages``).

        Replaces the base stage rather than extending it: for ``mixed`` with the std it returns
        exactly the base group advantage; LUFFY's off-policy weight alpha (1.0 in the released
        script) is not a knob here, since it leaves the advantages unchanged.
        """
        on_policy = rollouts.source == int(RowSource.ON_POLICY)
        adv = luffy_advantages(rollouts.reward, rollouts.group_ids, on_policy, self.args.luffy_advantage,
                               self.args.luffy_std_normalize, self.args.advantage_eps)
        teacher = rollouts.source == int(RowSource.TEACHER)
        if bool(teacher.any()):
            self.metrics.add("luffy/teacher_reward", rollouts.reward[teacher].float().mean().item(),
                             int(teacher.sum()))
            self.metrics.add("luffy/teacher_advantage", adv[teacher].float().mean().item(), int(teacher.sum()))
        return adv

    def record_rollout_metrics(self, rollouts: RolloutBatch) -> None:
        """The base rollout metrics (rewards, reward_std, lengths, samples) of the sampled rows only, so
        they describe the policy as in plain GRPO runs; traces have their own ``luffy/*`` metrics."""
        sampled = (rollouts.source != int(RowSource.TEACHER)).nonzero().flatten()
        if sampled.numel() == rollouts.source.numel():
            return super().record_rollout_metrics(rollouts)
        return super().record_rollout_metrics(rollouts.select(sampled))

    # ------------------------------------------------------------------ stage 6: loss
    def surrogate(self) -> Surrogate:
        """GRPO's pieces with LUFFY's off-policy shaping on teacher rows (``LuffySurrogate``).

        The logged ``ratio_mean`` averages the unshaped ratio of all tokens, so teacher tokens
        contribute pi_theta there; ``clip_ratio`` counts on-policy tokens only (traces are never clipped).
        """
        return LuffySurrogate(self.args.epsilon, self.args.epsilon_high, self.args.luffy_gamma,
                              self.args.luffy_clip_on_policy)

    def compute_loss(self, model, inputs: RolloutBatch, return_outputs=False, num_items_in_batch=None):
        """The base loss; with ``luffy_entropy_coeff`` > 0, minus coeff x the token-mean entropy.

        The entropy is taken from the logits of the base stage's own forward (a hook on the
        output head, which returns (N, C + 1, V): the last C + 1 positions), so no second forward
        runs. Token mean over all completion tokens of the batch, as verl's entropy loss.
        """
        coeff = self.args.luffy_entropy_coeff
        if coeff == 0:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        captured: list[torch.Tensor] = []
        head = self.accelerator.unwrap_model(model).get_output_embeddings()
        handle = head.register_forward_hook(lambda _module, _args, output: captured.append(output))
        try:
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            handle.remove()
        if len(captured) != 1:
            raise RuntimeError(f"expected one output-head call in the loss forward, saw {len(captured)}")
        logits = captured[0][:, :-1, :] / self.args.temperature  # position t predicts token t + 1
        mask = inputs.completion_mask.to(logits.device, torch.float32)
        entropy = masked_mean(token_entropy(logits), mask, "bnpo")
        self.metrics.add("luffy/entropy", entropy.item())
        return loss - coeff * entropy
