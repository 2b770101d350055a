"""``FFRTrainer``: GRPO with Find, Fix, Reason context repair (paper Sec. 3.2, Eq. 4-10).

It overrides two stages of :class:`r1v.trainer.grpo_trainer.Qwen2VLGRPOTrainer`
(generation and reward combination); advantages, log-probs and the clipped loss are
the base trainer's, unchanged.

``generate_completions`` (one generated batch of B prompts x G rollouts):
  1. first pass: the base generate (G rollouts per prompt), scored; c_i from the
     reward named "accuracy" (Eq. 4);
  2. each failed valid rollout becomes a teacher request (Eq. 5); all of them go
     out concurrently, bounded by the step deadline, before any collective;
  3. a usable patch (status ok; in no-GT mode also the local leak gate) is
     rendered into the rollout's prompt (``ffr.patch.render_patch``);
  4. the ranks agree (all-reduce MAX, ``ffr.coordination``) whether anyone has a
     patched prompt; if so, a rank with patched prompts encodes them in one call
     and samples ONE completion each in ONE ``generate`` call (Eq. 6), and a rank
     without any makes a minimal dummy ``generate`` (the ZeRO-3 rule);
  5. the chosen rollout of every row (Eq. 7) keeps its own prompt, so the
     base trainer's log-probs (policy, old, reference) are taken under the patched
     prompt where the patched rollout was chosen (Eq. 10).
``combine_rewards``: the RIR scalar (Eq. 8) with lambda = ``ffr_patch_tax``; any
reward function other than "accuracy" and "format" is added with its weight, on
the chosen rollout.

With ``ffr_enable`` false both overrides defer to the base class: vanilla GRPO.
A teacher fault (down, slow, 5xx, garbage, leak, bad frame indices) means "no
patch" for that rollout, is counted in ``teacher/*`` / ``ffr/*`` metrics and
never stops the step; but a teacher that refuses the run's key at start, or fails
``teacher_max_failed_steps`` rounds in a row, stops the run (``ffr.teacher_health``).

Extra visual context (``ffr_extra_visual``): up to ``ffr_extra_visual_max_images``
PIL images per patched prompt, cut from the frames the student already saw
(``meta["visual"]``): 'dense_frames' = sampled frames spread over the key-frame
range (no re-decoding: ``r1v.vision`` has no range decoder), 'region_crops' =
the patch's regions cropped from their frame (encoding upsamples them to the
image budget, a zoom). They add image inputs next to the video, i.e. a second
vision-tower call in that rank's forwards, which under ZeRO-3 with several ranks
would desynchronise parameter gathers; that combination is refused at start.
"""
from __future__ import annotations

import dataclasses
import logging
import types
from collections import Counter
from typing import Optional

import torch
from PIL import Image
from transformers import TrainerCallback

from ffr.config import REDACTED, ffr_field_names, take_teacher_secret
from ffr.coordination import second_round_plan
from ffr.teacher_health import FailedRoundGuard, check_teacher_at_start
from ffr.leakage import patch_leaks
from ffr.patch import EvidencePatch, render_patch
from ffr.patch_log import PatchLogRecord, patch_log_path, truncate_patch_logs
from ffr.rollouts import (assemble_chosen, build_request_item, check_distributed_limits, frame_size,
                          frames_as_images, gold_answer, spread)
from ffr.rir import ERROR_TYPES, choose_rollouts, first_pass_correct, rir_counts, rir_metrics_from_counts, rir_scalar
from ffr.teacher.client import TeacherClient
from ffr.teacher.schema import PatchRequestItem, PatchResult
from r1v.answers import extract_answer
from r1v.jsonl import append_jsonl
from r1v.rollout import generate_rollouts
from r1v.trainer.batch import PromptBatch, RolloutBatch, RowSource
from r1v.trainer.grpo_trainer import Qwen2VLGRPOTrainer

logger = logging.getLogger(__name__)

# Denominator count of each ffr/* ratio (see ffr.rir.rir_metrics_from_counts); used as the
# metric weight so the logged value is sum(numerators) / sum(denominators) over ranks and steps.
_RATIO_DENOMINATORS = {"ffr/intervention_ratio": "n_rollouts", "ffr/patch_coverage": "n_requested",
                       "ffr/fix_rate": "n_patched", "ffr/chosen_patched_frac": "n_rollouts",
                       **{f"ffr/fix_rate/{et}": f"n_patched/{et}" for et in ERROR_TYPES}}


@dataclasses.dataclass
class Repair:
    """One failed first-pass rollout (row ``row`` of the first-pass batch) and what became of it.

    outcome: 'no_patch' (teacher status not ok), 'leak_local' (no-GT local gate),
    'invalid_patch' (unrenderable, e.g. frame indices out of range) or 'patched'.
    """

    row: int
    item: PatchRequestItem
    result: Optional[PatchResult] = None
    outcome: str = "pending"
    detail: Optional[str] = None
    text: Optional[str] = None
    images: list = dataclasses.field(default_factory=list)


class PatchLogResume(TrainerCallback):
    """At train start, drop patch-log lines past the starting step, as ``metrics.jsonl`` drops its rows:
    they were written by a run that went further before it was killed, and the resumed run asks
    the teacher for those steps again."""

    def on_train_begin(self, args, state, control, **kwargs):
        dropped = truncate_patch_logs(args.output_dir, state.global_step, args.process_index, args.world_size)
        if dropped:
            logger.warning("patch log: dropped %d line(s) after step %d (written by an earlier run past this start)",
                           dropped, state.global_step)


class FFRTrainer(Qwen2VLGRPOTrainer):
    """Qwen2VLGRPOTrainer plus FFR; ``args`` must mix in ``FFRArguments`` (``ffr.train.FFRGRPOConfig``).

    teacher_client: an existing client (tests; needs ``url``, ``probe_ready``, ``request_patches``,
        ``snapshot``); default: built from the ``teacher_*`` fields.
    teacher_api_key: the bearer token when it was taken out of ``args`` (``ffr.train`` does,
        so no config dump or checkpoint holds it); default: ``args.teacher_api_key``.
    """

    def __init__(self, model, reward_funcs, args, train_dataset, *, teacher_client: Optional[TeacherClient] = None,
                 teacher_api_key: Optional[str] = None, **kwargs):
        missing = [n for n in ffr_field_names() if not hasattr(args, n)]
        if missing:
            raise TypeError("FFRTrainer needs a config with the FFR fields (ffr.train.FFRGRPOConfig); "
                            f"missing {missing[:3]}")
        self.ffr_enabled = bool(args.ffr_enable)
        names = self._resolve_rewards(reward_funcs)[1]
        if self.ffr_enabled and "accuracy" not in names:
            raise ValueError(f"ffr_enable needs a reward function named 'accuracy' (first-pass correctness, Eq. 4); "
                             f"got {names}")
        super().__init__(model, reward_funcs, args, train_dataset, **kwargs)
        self.ffr_calls: Counter[str] = Counter()  # second-round generate calls made: 'generate' / 'dummy'
        self._plan: Optional[str] = None  # this batch's second-round plan, for the metrics
        self.teacher: Optional[TeacherClient] = None
        if not self.ffr_enabled:
            return
        plugin = self.accelerator.state.deepspeed_plugin if self.is_deepspeed_enabled else None
        check_distributed_limits(args, self.accelerator.num_processes, plugin.zero_stage if plugin else 0)
        self._acc = self.reward_names.index("accuracy")
        self._fmt = self.reward_names.index("format") if "format" in self.reward_names else None
        self._others = [j for j in range(len(self.reward_names)) if j not in (self._acc, self._fmt)]
        if any(self.reward_weights[j] != 1.0 for j in (self._acc, self._fmt) if j is not None):
            logger.warning("FFR scores accuracy and format with Eq. 8 (format weight = ffr_format_weight); "
                           "their reward_weights are ignored")
        self._second_sampling = dataclasses.replace(self.sampling, num_return_sequences=1)
        self.teacher = teacher_client or self._build_teacher(teacher_api_key)
        check_teacher_at_start(self.teacher, self.accelerator.device, self.accelerator.is_main_process)
        self.teacher_guard = FailedRoundGuard(args.teacher_max_failed_steps, args.teacher_on_failed_steps,
                                              self.teacher.url)
        self.add_callback(PatchLogResume())

    def _build_teacher(self, api_key: Optional[str]) -> TeacherClient:
        if api_key is None:
            api_key = take_teacher_secret(self.args)  # from the key file, or moved out of args
        if api_key is None and self.args.teacher_api_key == REDACTED:
            raise ValueError("teacher_api_key is redacted in args; pass the key as FFRTrainer(teacher_api_key=...)")
        fields = {n: getattr(self.args, n) for n in ffr_field_names()}
        fields["teacher_api_key"] = api_key
        return TeacherClient.from_args(types.SimpleNamespace(**fields))

    # ------------------------------------------------------------------ stage 2: generate
    def generate_completions(self, prompts: PromptBatch) -> RolloutBatch:
        """First pass, teacher round, coordinated second round; returns the chosen rollouts (B*G rows)."""
        first = super().generate_completions(prompts)
        if not self.ffr_enabled:
            return first
        first.rewards = self.score_completions(first)
        accuracy = first.rewards[:, self._acc].float().cpu()
        first_correct = first_pass_correct(accuracy, self.args.ffr_correct_threshold)
        repairs = self.build_requests(first, first_correct)
        with self.timer("ffr_teacher"):
            results = self.request_patches([r.item for r in repairs]) if repairs else []
        # Collective, on every rank, after its teacher round: may stop the run (all ranks at once).
        failed_rounds = self.teacher_guard.update(results, self.accelerator.device)
        if self.teacher_guard.max_failed:
            self.metrics.add("teacher/consecutive_failed_rounds", float(failed_rounds))
        self.accept_patches(first, repairs, results)
        patched = [r for r in repairs if r.outcome == "patched"]
        with self.timer("ffr_second_round"):
            second = self.run_second_round(first, patched)
        return self.choose(first, second, repairs, patched, first_correct)

    def build_requests(self, first: RolloutBatch, first_correct: torch.Tensor) -> list[Repair]:
        """One teacher request per failed valid rollout (Eq. 5; no gold answer in no-GT mode)."""
        failed = (~first_correct) & first.valid.cpu()
        step, rank = self.state.global_step, self.accelerator.process_index
        repairs = []
        for i in failed.nonzero().flatten().tolist():
            meta = first.prompts.meta[i]
            rec = meta["record"]
            item = build_request_item(rec, f"{rec.get('problem_id')}#s{step}r{rank}i{i}", meta["timestamps"],
                                      first.completions_text[i], use_gt=self.args.ffr_use_gt)
            repairs.append(Repair(row=i, item=item))
        return repairs

    def request_patches(self, items: list[PatchRequestItem]) -> list[PatchResult]:
        """Ask the teacher (never raises for teacher faults; returns within the step deadline)."""
        return self.teacher.request_patches(items)

    def accept_patches(self, first: RolloutBatch, repairs: list[Repair], results: list[PatchResult]) -> None:
        """Fill each repair's outcome; render the second-round prompt text (and extra images) of usable patches."""
        for rep, res in zip(repairs, results, strict=True):
            rep.result = res
            if res.status != "ok":
                rep.outcome, rep.detail = "no_patch", res.detail
                continue
            meta = first.prompts.meta[rep.row]
            rec = meta["record"]
            try:
                if not self.args.ffr_use_gt:
                    # The teacher never saw the gold answer, so the service could not gate leaks.
                    reason = patch_leaks(res.patch, gold_answer(rec), rec.get("options") or [], rec["problem_type"])
                    if reason:
                        rep.outcome, rep.detail = "leak_local", reason
                        continue
                size = frame_size(meta["visual"])
                rep.text = render_patch(meta["prompt_text"], res.patch, meta["timestamps"],
                                        visual_context=self.args.ffr_visual_context, frame_size=size)
                rep.images = self.extra_images(meta, res.patch)
            except ValueError as err:
                logger.warning("unusable patch for %s: %s", rep.item.sample_id, err)
                rep.outcome, rep.detail = "invalid_patch", str(err)
                continue
            rep.outcome = "patched"

    def extra_images(self, meta: dict, patch: EvidencePatch) -> list[Image.Image]:
        """Extra visual context for one patched prompt (see the module docstring); [] when off."""
        mode, limit = self.args.ffr_extra_visual, self.args.ffr_extra_visual_max_images
        if mode == "none":
            return []
        frames = frames_as_images(meta["visual"])
        key = patch.key_frames
        if mode == "dense_frames":
            return [frames[i] for i in spread(range(key.start, key.end + 1), limit)] if key else []
        middle = (key.start + key.end) // 2 if key else len(frames) // 2
        crops = []
        for region in patch.spatial_regions[:limit]:
            image = frames[region.frame if region.frame is not None else middle]
            x0, y0, x1, y1 = region.to_relative(image.size).box
            w, h = image.size
            crops.append(image.crop((int(x0 * w), int(y0 * h), max(int(x1 * w), int(x0 * w) + 1),
                                     max(int(y1 * h), int(y0 * h) + 1))))
        return crops

    def second_round_plan(self, has_patched_rows: bool) -> Optional[str]:
        """'generate' / 'dummy' / None, agreed by all ranks (collective, see ffr.coordination)."""
        return second_round_plan(has_patched_rows, self.accelerator.device)

    def run_second_round(self, first: RolloutBatch, patched: list[Repair]) -> Optional[RolloutBatch]:
        """The coordinated second round; returns the scored patched rollouts (rows in ``patched`` order) or None."""
        plan = self._plan = self.second_round_plan(bool(patched))
        if plan is None:
            return None
        if plan == "dummy":
            self.ffr_calls["dummy"] += 1
            self.run_dummy_generate()
            return None
        batch = self.encode_patched(first, patched)
        # Each patched rollout joins the group of the first-pass rollout it repairs.
        groups = first.group_ids[torch.tensor([rep.row for rep in patched], device=first.group_ids.device)]
        second = self.make_rollouts(batch, self.generate_second_round(batch), group_ids=groups,
                                    source=RowSource.PATCHED)
        second.rewards = self.score_completions(second)
        return second

    def encode_patched(self, first: RolloutBatch, patched: list[Repair]) -> PromptBatch:
        """All patched prompts of this rank in ONE encode call (identical prompts encoded once), row per repair."""
        index: dict[tuple, int] = {}
        texts, visuals, metas, images, rows = [], [], [], [], []
        for rep in patched:
            meta = first.prompts.meta[rep.row]
            key = (id(meta), rep.text)  # same prompt row and same rendered patch -> same inputs
            if key not in index:
                index[key] = len(texts)
                texts.append(rep.text)
                visuals.append(meta["visual"])
                metas.append({**meta, "prompt_text": rep.text, "ffr_patched": True})
                images.append(rep.images)
            rows.append(index[key])
        batch = self.encode(texts, visuals, metas, extra_images=images if any(images) else None)
        return batch.select(rows)

    def generate_second_round(self, batch: PromptBatch) -> torch.Tensor:
        """ONE sampled completion per patched prompt, in one ``generate`` call: (R, C2) ids."""
        self.ffr_calls["generate"] += 1
        return generate_rollouts(self.model_wrapped, self.accelerator, batch.model_inputs(), self._second_sampling,
                                 self.pad_token_id, self.eos_token_ids, self.suppress_ids,
                                 gather_weights=self.args.ds3_gather_for_generation)

    def choose(self, first: RolloutBatch, second: Optional[RolloutBatch], repairs: list[Repair],
               patched: list[Repair], first_correct: torch.Tensor) -> RolloutBatch:
        """Chosen rollouts (Eq. 7) as one RolloutBatch; FFR per-row info goes to ``extras['ffr']``."""
        n = len(first.completions_text)
        nan = torch.full((n,), float("nan"))
        acc, fmt = self._column(first.rewards, self._acc), self._column(first.rewards, self._fmt)
        p_acc, p_fmt, has_patch, second_row = nan.clone(), nan.clone(), torch.zeros(n, dtype=torch.bool), {}
        if second is not None:
            for j, rep in enumerate(patched):
                second_row[rep.row] = j
                has_patch[rep.row] = True
                p_acc[rep.row] = second.rewards[j, self._acc].item()
                p_fmt[rep.row] = self._column(second.rewards, self._fmt)[j].item()
        chosen = choose_rollouts(first_correct, acc, p_acc, has_patch, patch_tax=self.args.ffr_patch_tax)
        rollouts = assemble_chosen(first, second, [n + second_row[i] if chosen[i] else i for i in range(n)])
        requested = torch.zeros(n, dtype=torch.bool)
        for rep in repairs:
            requested[rep.row] = True
        texts = {rep.row: second.completions_text[j] for j, rep in enumerate(patched)} if second else {}
        rollouts.extras["ffr"] = {
            "first_acc": acc, "first_fmt": fmt, "patched_acc": p_acc, "patched_fmt": p_fmt, "chosen": chosen,
            "first_correct": first_correct, "requested": requested, "has_patch": has_patch,
            "first_texts": list(first.completions_text), "second_texts": texts,
        }
        self.record_ffr_metrics(rollouts, repairs)
        return rollouts

    @staticmethod
    def _column(rewards: torch.Tensor, j: Optional[int]) -> torch.Tensor:
        return torch.zeros(rewards.shape[0]) if j is None else rewards[:, j].float().cpu()

    # ------------------------------------------------------------------ stage 3: reward
    def combine_rewards(self, rollouts: RolloutBatch, columns: Optional[list[int]] = None) -> torch.Tensor:
        """RIR scalar s_i (Eq. 8) plus the base's weighted sum of the other rewards of the chosen rollout.

        The RIR scalar stands for the accuracy and format columns: it is included when ``columns``
        is None or holds accuracy; every other requested column goes to ``super()``.
        """
        if not self.ffr_enabled:
            return super().combine_rewards(rollouts, columns)
        info = rollouts.extras["ffr"]
        if columns is None or self._acc in columns:
            s = rir_scalar(info["first_acc"], info["patched_acc"], info["chosen"], info["first_fmt"],
                           info["patched_fmt"], patch_tax=self.args.ffr_patch_tax,
                           format_weight=self.args.ffr_format_weight)
        else:
            s = torch.zeros(rollouts.rewards.shape[0])
        rest = [j for j in self._others if columns is None or j in columns]
        if rest:
            s = s + super().combine_rewards(rollouts, rest).float().cpu()
        return s.to(rollouts.rewards.device)

    # ------------------------------------------------------------------ metrics and logs
    def record_ffr_metrics(self, rollouts: RolloutBatch, repairs: list[Repair]) -> None:
        """ffr/* ratios (weighted by their denominators), outcomes, teacher/* snapshot, patch log."""
        info = rollouts.extras["ffr"]
        has_patch = info["has_patch"]
        patched_correct = first_pass_correct(torch.where(has_patch, info["patched_acc"], 0.0),
                                             self.args.ffr_correct_threshold)
        by_row = {r.row: r for r in repairs}
        types_ = [list(by_row[i].result.patch.error_types) if has_patch[i] else None for i in range(len(has_patch))]
        counts = rir_counts(info["first_correct"], info["requested"], has_patch, patched_correct & has_patch,
                            info["chosen"], types_)
        for key, value in rir_metrics_from_counts(counts).items():
            self.metrics.add(key, value, int(counts[_RATIO_DENOMINATORS[key]]))
        valid = rollouts.valid.cpu()
        if valid.any():
            self.metrics.add("ffr/first_pass_accuracy", info["first_acc"][valid].mean().item(), int(valid.sum()))
        outcomes = Counter(r.outcome for r in repairs)
        for outcome in ("no_patch", "leak_local", "invalid_patch", "patched"):
            self.metrics.add(f"ffr/outcome/{outcome}", float(outcomes[outcome]))
        for kind in ("generate", "dummy"):
            self.metrics.add(f"ffr/second_round_{kind}", float(self._plan == kind))
        snap = self.teacher.snapshot(reset=True)
        for key, value in snap.items():
            no_calls = key.startswith("teacher/latency") and snap["teacher/requests"] == 0
            if not no_calls and not (key == "teacher/cache_hit_rate" and snap["teacher/items"] == 0):
                self.metrics.add(key, value)
        if self.args.ffr_patch_log and repairs:
            self.write_patch_log(rollouts, repairs, patched_correct)

    def write_patch_log(self, rollouts: RolloutBatch, repairs: list[Repair], patched_correct: torch.Tensor) -> None:
        """Append one ``PatchLogRecord`` line per teacher request to ``output_dir/patch_log/rank{r}.jsonl``.

        Each line also carries the request (question, options, problem_type, the extracted
        gold answer, also in no-GT mode, video path, frame times, student response) and the
        teacher's bookkeeping, so ``python -m ffr.audit`` can re-run the leak checks offline.
        """
        info = rollouts.extras["ffr"]
        records = []
        for rep in repairs:
            i, res = rep.row, rep.result
            second = info["second_texts"].get(i)
            outcome = rep.outcome if rep.outcome != "patched" else \
                ("fixed" if patched_correct[i] else "improved" if info["chosen"][i] else "not_fixed")
            records.append(PatchLogRecord(
                step=self.state.global_step, sample_id=rep.item.sample_id,
                problem_id=rollouts.prompts.meta[i]["record"].get("problem_id"),
                question=rep.item.question, options=rep.item.options, problem_type=rep.item.problem_type,
                gold_answer=gold_answer(rollouts.prompts.meta[i]["record"]),
                video_path=rep.item.video_path, timestamps=rep.item.timestamps,
                student_response=rep.item.student_response,
                student_answer=extract_answer(info["first_texts"][i]), status=res.status,
                error_type=res.error_type, detail=rep.detail, patch=res.patch,
                patched_answer=extract_answer(second) if second is not None else None,
                first_reward=float(info["first_acc"][i]),
                patched_reward=float(info["patched_acc"][i]) if info["has_patch"][i] else None,
                chosen_patched=bool(info["chosen"][i]), outcome=outcome,
                teacher_model=res.teacher_model, prompt_version=res.prompt_version,
                tokens_in=res.tokens_in, tokens_out=res.tokens_out, regenerated=res.regenerated,
                patch_error_types=res.patch_error_types, leak_source=res.leak_source).to_json())
        path = patch_log_path(self.args.output_dir, self.accelerator.process_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        append_jsonl(path, records)  # one write per step: a kill tears at most the last line
