"""Entry point: ``python -m r1v.replay [--config run.yaml] [--flag value ...]`` trains a student with RePO.

RePO (replay-enhanced policy optimisation; the replay baseline of the paper's Fig. 5): the launcher
of ``r1v.grpo`` (data, vision, model flags, YAML + CLI merge, run config, checkpoints) with
``ReplayConfig`` = ``GRPOConfig`` plus ``--replay_strategy`` (all, random_k, highest_k, recent_k,
max_variance_k), ``--replay_k``, ``--replay_min_cache``, ``--replay_max_cache``,
``--replay_adv_norm`` (split, mixed) and ``--replay_coef`` (lambda), and
``r1v.trainer.replay.ReplayTrainer``. Defaults are RePO's script: highest_k, k = 8, FIFOs of 16
rollouts per prompt replayed once full, split advantages, lambda = 1.
"""
from __future__ import annotations

import sys
from typing import Optional

from r1v import grpo
from r1v.config import GRPOScriptArguments, ModelConfig
from r1v.trainer.replay import ReplayConfig, ReplayTrainer


def run(configs: tuple, extra_kwargs: Optional[dict] = None) -> ReplayTrainer:
    """Train with parsed (GRPOScriptArguments, ReplayConfig, ModelConfig); returns the trainer."""
    return grpo.run(configs, trainer_cls=ReplayTrainer, extra_kwargs=extra_kwargs)


def parse_args(argv: Optional[list[str]] = None) -> tuple:
    """(GRPOScriptArguments, ReplayConfig, ModelConfig); a bad flag or value exits with status 2 naming it."""
    return grpo.parse_cli((GRPOScriptArguments, ReplayConfig, ModelConfig), argv, prog="r1v.replay")


def main(argv: Optional[list[str]] = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
