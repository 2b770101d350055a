"""Entry point: ``python -m r1v.sft [--config sft.yaml] [--flag value ...]`` fine-tunes a student on CoT data.

Supervised fine-tuning of a Qwen2.5-VL / Qwen3-VL student on Video-R1-schema records that carry
a reasoning ``process`` (``<think>...</think>``) and a ``solution`` (``<answer>...</answer>``):
the target is ``process + "\\n" + solution``, the loss covers the assistant tokens only, and
prompts and frames are built as in GRPO (``r1v.sft_data``). This is how the SFT starting points
(Video-R1-SFT from Video-R1-COT-165k) and the SFT-on-teacher baselines (paper Table 4 / 11, on
traces written by the teacher-trace CLI) are trained.

Trainer: the transformers ``Trainer`` with a collator (``r1v.trainer.sft_trainer``), not TRL's
``SFTTrainer``: TRL is not installed or pinned here, and SFT must encode prompts exactly as the
GRPO trainer does (see that module's docstring).

Flags are the fields of ``SFTScriptArguments`` (data and the frame policy: the data and vision
fields of ``r1v.config.GRPOScriptArguments``, same names and defaults), ``SFTConfig``
(``TrainingArguments`` + ``max_length``) and ``ModelConfig``; ``--config`` YAML supplies defaults
that later flags override. The resolved config and git commit go to ``output_dir/run_config.json``.
"""
from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass, field
from typing import Optional

from transformers import TrainingArguments

from r1v.config import GRPOScriptArguments, ModelConfig, check_trains_something, write_run_config
from r1v.grpo import load_training_records, parse_cli, resume_arg, vision_config_from
from r1v.sft_data import sft_target

logger = logging.getLogger("r1v.sft")

# GRPOScriptArguments fields that mean nothing without rewards.
_REWARD_FIELDS = ("reward_funcs", "reward_weights")


def _copy_field(f: dataclasses.Field) -> tuple:
    return f.name, f.type, field(default=f.default, default_factory=f.default_factory, metadata=f.metadata)


# The data and frame-policy fields of GRPO's script arguments, shared rather than restated so that
# SFT and GRPO cannot drift apart in how they sample and size frames.
SFTScriptArguments = dataclasses.make_dataclass(
    "SFTScriptArguments",
    [_copy_field(f) for f in dataclasses.fields(GRPOScriptArguments) if f.name not in _REWARD_FIELDS],
    namespace={"__doc__": "Data and vision settings of an SFT run (GRPOScriptArguments without the rewards)."},
)
SFTScriptArguments.__module__ = __name__


@dataclass
class SFTConfig(TrainingArguments):
    """``TrainingArguments`` plus SFT's knobs (TRL names)."""

    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep every record field: the collator reads them (must stay False)."}
    )
    max_length: Optional[int] = field(
        default=None,
        metadata={"help": "Most tokens per example (prompt with visual tokens + target); a longer example is "
                          "skipped with a warning and counted in data/skipped_too_long. None: no limit."},
    )

    def __post_init__(self):
        super().__post_init__()
        check_trains_something(self)  # the rule GRPO and T-GRPO apply: max_steps 0 would train nothing
        if self.remove_unused_columns:
            raise ValueError("remove_unused_columns must be False: the SFT collator needs the records' fields")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"max_length must be >= 1 or None, got {self.max_length}")
        if self.activation_checkpointing and self.activation_checkpointing_kwargs is None:
            # Non-reentrant checkpointing gives the same gradients and works with frozen inputs.
            self.activation_checkpointing_kwargs = self.gradient_checkpointing_kwargs = {"use_reentrant": False}


def usable_records(records: list[dict], on_error: str) -> list[dict]:
    """Records with a valid SFT target; a bad one raises (``on_error='raise'``) or is logged and dropped."""
    kept = []
    for rec in records:
        try:
            sft_target(rec)
        except ValueError as err:
            if on_error == "raise":
                raise
            logger.warning("skipping SFT record: %s", err)
            continue
        kept.append(rec)
    if len(kept) < len(records):
        logger.warning("skipped %d of %d records without a usable process/solution", len(records) - len(kept),
                       len(records))
    if not kept:
        raise ValueError("no record has a usable 'process' and 'solution' for SFT")
    return kept


def run(configs: tuple):
    """Train with parsed (SFTScriptArguments, SFTConfig, ModelConfig); returns the trainer."""
    from r1v.trainer.callbacks import JsonlLogCallback
    from r1v.trainer.sft_trainer import Qwen2VLSFTTrainer

    script_args, training_args, model_args = configs
    logging.basicConfig(
        level=logging.INFO if training_args.process_index == 0 else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    records = usable_records(load_training_records(script_args), script_args.data_on_error)
    logger.info("loaded %d SFT records from %s", len(records), script_args.dataset_name)
    if training_args.process_index == 0:
        write_run_config(training_args.output_dir, configs)
    trainer = Qwen2VLSFTTrainer(
        model_args.model_name_or_path, training_args, records, vision_config=vision_config_from(script_args),
        callbacks=[JsonlLogCallback()], torch_dtype=model_args.torch_dtype,
        attn_implementation=model_args.attn_implementation, freeze_vision_tower=model_args.freeze_vision_tower,
    )
    trainer.train(resume_from_checkpoint=resume_arg(training_args.resume_from_checkpoint))
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(training_args.output_dir)
    # Finish trackers and tear the process group down on every rank; left to interpreter exit, the
    # group's threads can abort a rank after a successful run (accelerate asks for this call).
    trainer.accelerator.end_training()
    return trainer


def parse_args(argv: Optional[list[str]] = None) -> tuple:
    """(SFTScriptArguments, SFTConfig, ModelConfig) from ``--config`` YAML and flags.

    A bad flag, value or config file, or a missing ``--model_name_or_path``, exits with status 2
    and one line naming the problem.
    """
    configs = parse_cli((SFTScriptArguments, SFTConfig, ModelConfig), argv, prog="r1v.sft")
    if not configs[2].model_name_or_path:
        sys.stderr.write("r1v.sft: error: --model_name_or_path is required (the student checkpoint to fine-tune)\n")
        raise SystemExit(2)
    return configs


def main(argv: Optional[list[str]] = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
