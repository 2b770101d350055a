"""Entry point: ``python -m ffr.train [--config run.yaml] [--flag value ...]`` trains a student with FFR.

The same launcher as ``r1v.grpo`` (data, vision, model flags, YAML + CLI merge, run
config, checkpoint), with ``FFRGRPOConfig`` = ``GRPOConfig`` plus the ``ffr_*`` /
``teacher_*`` fields of ``FFRArguments``, and ``FFRTrainer``. ``--ffr_enable false``
(the default) is vanilla GRPO through the same trainer.

The teacher's bearer token (``--teacher_api_key`` or, better, ``--teacher_api_key_file``)
is taken out of the config object before anything is written or logged: the run
config, the Trainer's saved ``training_args.bin`` and experiment trackers see ``***``,
and the logged argv is scrubbed. Only the teacher client holds the key.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Optional

from ffr.config import FFRArguments, take_teacher_secret
from ffr.trainer import FFRTrainer
from r1v import grpo
from r1v import config as r1v_config
from r1v.config import GRPOConfig, GRPOScriptArguments, ModelConfig

logger = logging.getLogger("ffr.train")


@dataclass
class FFRGRPOConfig(FFRArguments, GRPOConfig):
    """``GRPOConfig`` (TrainingArguments + GRPO knobs) plus the FFR and teacher-client fields.

    ``FFRArguments`` comes first so its ``__post_init__`` validates the FFR fields and then
    chains to ``TrainingArguments.__post_init__``. ``write_run_config`` redacts its secret fields
    (``r1v.run_config.is_secret_field``: ``teacher_api_key``, ``hub_token``, ...).
    """


def redact_argv(argv: list[str]) -> list[str]:
    """Copy of ``argv`` with the value of every secret flag (each spelling, ``=`` forms too) replaced by ``***``."""
    return r1v_config.redact_argv(argv)


def run(configs: tuple, extra_kwargs: Optional[dict] = None) -> FFRTrainer:
    """Train with parsed (GRPOScriptArguments, FFRGRPOConfig, ModelConfig); returns the trainer."""
    secret = take_teacher_secret(configs[1])
    kwargs = {"teacher_api_key": secret, **(extra_kwargs or {})}
    return grpo.run(configs, trainer_cls=FFRTrainer, extra_kwargs=kwargs)


def main(argv: Optional[list[str]] = None) -> None:
    # parse_cli also scrubs sys.argv (trackers record it), so a key given on the command line never lands there.
    run(grpo.parse_cli((GRPOScriptArguments, FFRGRPOConfig, ModelConfig), argv, prog="ffr.train"))


if __name__ == "__main__":
    main(sys.argv[1:])
