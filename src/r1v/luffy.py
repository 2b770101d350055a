"""Entry point: ``python -m r1v.luffy [--config run.yaml] [--flag value ...]`` trains a student with LUFFY.

LUFFY (Yan et al., 2025; the paper's Fig. 5 off-policy baseline): the launcher of ``r1v.grpo``
(data, vision, model flags, YAML + CLI merge, run config, checkpoints) with ``LuffyConfig`` =
``GRPOConfig`` plus ``--luffy_traces`` (JSONL written by ``python -m r1v.teacher_traces``),
``--luffy_num_traces`` (k of the ``--num_generations`` rows of a group, default 1),
``--luffy_gamma`` (0.1), ``--luffy_advantage`` (mixed | split), ``--luffy_std_normalize``,
``--luffy_clip_on_policy``, ``--luffy_entropy_coeff``, and ``--beta`` defaulting to 0 (no KL);
the trainer is ``r1v.trainer.luffy.LuffyTrainer``. Defaults follow the paper; the module
docstring of ``r1v.trainer.luffy`` lists the flags that reproduce the released script instead.
"""
from __future__ import annotations

import sys
from typing import Optional

from r1v import grpo
from r1v.config import GRPOScriptArguments, ModelConfig
from r1v.trainer.luffy import LuffyConfig, LuffyTrainer


def run(configs: tuple, extra_kwargs: Optional[dict] = None) -> LuffyTrainer:
    """Train with parsed (GRPOScriptArguments, LuffyConfig, ModelConfig); returns the trainer."""
    return grpo.run(configs, trainer_cls=LuffyTrainer, extra_kwargs=extra_kwargs)


def parse_args(argv: Optional[list[str]] = None) -> tuple:
    """(GRPOScriptArguments, LuffyConfig, ModelConfig); a bad flag or value exits with status 2 naming it."""
    return grpo.parse_cli((GRPOScriptArguments, LuffyConfig, ModelConfig), argv, prog="r1v.luffy")


def main(argv: Optional[list[str]] = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
