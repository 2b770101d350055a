"""Entry point: ``python -m r1v.grpo [--config run.yaml] [--flag value ...]`` trains a student with GRPO.

Flags are the fields of ``GRPOScriptArguments``, ``GRPOConfig`` (TrainingArguments + GRPO)
and ``ModelConfig``; a YAML file given with ``--config`` supplies defaults that later
flags override. The resolved config and git commit go to ``output_dir/run_config.json``.
"""
from __future__ import annotations

import logging
import sys
from typing import Optional

from r1v.config import GRPOConfig, GRPOScriptArguments, ModelConfig, parse_config, redact_argv, write_run_config
from r1v.data import read_mixture, read_records
from r1v.vision import VisionConfig

logger = logging.getLogger("r1v.grpo")


def vision_config_from(script_args: GRPOScriptArguments) -> VisionConfig:
    """The one frame-sampling policy, built from the run's flags."""
    return VisionConfig(
        fps=script_args.fps, min_frames=script_args.min_frames, max_frames=script_args.max_frames,
        video_min_pixels=script_args.video_min_pixels, video_max_pixels=script_args.video_max_pixels,
        image_min_pixels=script_args.min_pixels, image_max_pixels=script_args.max_pixels,
        backend=script_args.video_backend,
    )


def load_training_records(script_args: GRPOScriptArguments) -> list[dict]:
    """Records of a Video-R1 JSON/JSONL file or of a YAML mixture (``data_configs/*.yaml``).

    Raises ValueError when the data gives no record (a run that would train on nothing),
    and when ``--data_root`` is given with a mixture (each mixture entry sets its own root).
    """
    path = script_args.dataset_name
    if not path:
        raise ValueError("--dataset_name is required (a Video-R1 JSON/JSONL file or a data_configs/*.yaml mixture)")
    if path.endswith((".yaml", ".yml")):
        if script_args.data_root is not None:
            raise ValueError(f"--data_root {script_args.data_root!r} applies to a single JSON/JSONL file; the mixture "
                             f"{path} sets data_root per entry (edit the entry or its ${{VAR:-default}})")
        result = read_mixture(path, on_error=script_args.data_on_error)
    else:
        result = read_records(path, data_root=script_args.data_root, on_error=script_args.data_on_error)
    if not result.records:
        raise ValueError(f"{path}: no training record ({result.skipped} skipped as bad); nothing to train on")
    if result.skipped:
        logger.warning("%s: %d record(s) skipped as bad (data_on_error=skip), %d kept",
                       path, result.skipped, len(result.records))
    return result.records


def resume_arg(value: Optional[str]):
    """``--resume_from_checkpoint true`` resumes from the newest checkpoint in output_dir."""
    if value is None or str(value).lower() in ("", "false", "none"):
        return None
    return True if str(value).lower() in ("true", "latest") else value


def build_trainer(script_args, training_args, model_args, trainer_cls=None, extra_kwargs: Optional[dict] = None,
                  named_rewards: Optional[dict] = None):
    """Construct the trainer for a parsed config (``trainer_cls`` lets FFR reuse this).

    ``named_rewards`` maps a name in ``--reward_funcs`` to a reward callable built from the
    run's config (e.g. ``judge``, ``r1v.judge_grpo``); other names resolve in ``r1v.rewards``.
    """
    from r1v.trainer.grpo_trainer import Qwen2VLGRPOTrainer
    from r1v.trainer.callbacks import JsonlLogCallback

    trainer_cls = trainer_cls or Qwen2VLGRPOTrainer
    records = load_training_records(script_args)
    logger.info("loaded %d training records from %s", len(records), script_args.dataset_name)
    return trainer_cls(
        model=model_args.model_name_or_path,
        reward_funcs=[(named_rewards or {}).get(name, name) for name in script_args.reward_funcs],
        args=training_args,
        train_dataset=records,
        vision_config=vision_config_from(script_args),
        reward_weights=script_args.reward_weights,
        callbacks=[JsonlLogCallback()],
        torch_dtype=model_args.torch_dtype,
        attn_implementation=model_args.attn_implementation,
        freeze_vision_tower=model_args.freeze_vision_tower,
        **(extra_kwargs or {}),
    )


def run(configs: tuple, trainer_cls=None, extra_kwargs: Optional[dict] = None, named_rewards: Optional[dict] = None):
    """Train with already-parsed dataclasses; returns the trainer (for tests and notebooks).
    ``named_rewards``: see :func:`build_trainer`."""
    script_args, training_args, model_args = configs[:3]
    logging.basicConfig(
        level=logging.INFO if training_args.process_index == 0 else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if training_args.process_index == 0:
        write_run_config(training_args.output_dir, configs)
    trainer = build_trainer(script_args, training_args, model_args, trainer_cls, extra_kwargs, named_rewards)
    trainer.train(resume_from_checkpoint=resume_arg(training_args.resume_from_checkpoint))
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(training_args.output_dir)
    # Finish trackers and tear the process group down on every rank; left to interpreter exit, the
    # group's threads can abort a rank after a successful run (accelerate asks for this call).
    trainer.accelerator.end_training()
    return trainer


def parse_cli(dataclass_types: tuple, argv: Optional[list[str]] = None, prog: str = "r1v.grpo") -> tuple:
    """:func:`parse_config` for a command line: a bad flag, key, value or config file exits with
    status 2 and one line naming the problem (no traceback).

    Every entry point parses here, so this is also where ``sys.argv`` loses its secrets
    (``r1v.run_config.redact_argv``): trackers such as wandb record it.
    """
    try:
        configs = parse_config(dataclass_types, argv)
    except (ValueError, FileNotFoundError) as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        raise SystemExit(2) from exc
    sys.argv = redact_argv(sys.argv)
    return configs


def main(argv: Optional[list[str]] = None) -> None:
    run(parse_cli((GRPOScriptArguments, GRPOConfig, ModelConfig), argv))


if __name__ == "__main__":
    main(sys.argv[1:])
