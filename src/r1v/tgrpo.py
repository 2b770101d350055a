"""Entry point: ``python -m r1v.tgrpo [--config run.yaml] [--flag value ...]`` trains a student with T-GRPO.

Video-R1's temporal GRPO (paper Table 3, row "w./ SFT + w./ T-GRPO (Video-R1)"): the launcher of
``r1v.grpo`` (data, vision, model flags, YAML + CLI merge, run config, checkpoints) with
``TGRPOConfig`` = ``GRPOConfig`` plus ``--temporal``, ``--temporal_bonus``, ``--temporal_ratio``,
``--shuffled_num_generations``, ``--accuracy_threshold``, ``--len_control`` and the
``--len_control_*`` knobs, and ``r1v.trainer.tgrpo.TGRPOTrainer``. ``--temporal false`` with
``--len_control false`` is vanilla GRPO through the same trainer.
"""
from __future__ import annotations

import sys
from typing import Optional

from r1v import grpo
from r1v.config import GRPOScriptArguments, ModelConfig
from r1v.trainer.tgrpo import TGRPOConfig, TGRPOTrainer


def run(configs: tuple, extra_kwargs: Optional[dict] = None) -> TGRPOTrainer:
    """Train with parsed (GRPOScriptArguments, TGRPOConfig, ModelConfig); returns the trainer."""
    return grpo.run(configs, trainer_cls=TGRPOTrainer, extra_kwargs=extra_kwargs)


def parse_args(argv: Optional[list[str]] = None) -> tuple:
    """(GRPOScriptArguments, TGRPOConfig, ModelConfig); a bad flag or value exits with status 2 naming it."""
    return grpo.parse_cli((GRPOScriptArguments, TGRPOConfig, ModelConfig), argv, prog="r1v.tgrpo")


def main(argv: Optional[list[str]] = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
