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

from ffr.config import REDACTED, FFRArguments, take_teacher_secret
from ffr.trainer import FFRTrainer
from r1v import grpo
from r1v.config import GRPOConfig, GRPOScriptArguments, ModelConfig, parse_config

logger = logging.getLogger("ffr.train")

_SECRET_FLAGS = ("--teacher_api_key",)


@dataclass
class FFRGRPOConfig(FFRArguments, GRPOConfig):
    """``GRPOConfig`` (TrainingArguments + GRPO knobs) plus the FFR and teacher-client fields.

    ``FFRArguments`` comes first so its ``__post_init__`` validates the FFR fields and then
    chains to ``TrainingArguments.__post_init__``.
    """


def redact_argv(argv: list[str]) -> list[str]:
    """Copy of ``argv`` with the value of every secret flag replaced by ``***``."""
    out, hide_next = [], False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
        elif arg in _SECRET_FLAGS:
            out.append(arg)
            hide_next = True
        elif arg.startswith(tuple(f"{flag}=" for flag in _SECRET_FLAGS)):
            out.append(arg.split("=", 1)[0] + "=" + REDACTED)
        else:
            out.append(arg)
    return out


def run(configs: tuple, extra_kwargs: Optional[dict] = None) -> FFRTrainer:
    """Train with parsed (GRPOScriptArguments, FFRGRPOConfig, ModelConfig); returns the trainer."""
    secret = take_teacher_secret(configs[1])
    kwargs = {"teacher_api_key": secret, **(extra_kwargs or {})}
    return grpo.run(configs, trainer_cls=FFRTrainer, extra_kwargs=kwargs)


def main(argv: Optional[list[str]] = None) -> None:
    configs = parse_config((GRPOScriptArguments, FFRGRPOConfig, ModelConfig), argv)
    # The run config records sys.argv; a key given on the command line must not land there.
    sys.argv = redact_argv(sys.argv)
    run(configs)


if __name__ == "__main__":
    main(sys.argv[1:])
