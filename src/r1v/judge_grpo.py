"""Entry point: ``python -m r1v.judge_grpo [--config run.yaml] [--flag value ...]``: GRPO with a VLM judge reward.

The paper's Fig. 5 baseline "VLM-as-a-judge": the launcher of ``r1v.grpo`` (data, vision, model
flags, YAML + CLI merge, run config, checkpoints) plus ``JudgeRewardArguments`` (the ``judge_*``
flags below), which build ``r1v.judge_reward.JudgeReward`` under the reward name ``judge``.

- In place of accuracy (the paper's variant): ``--reward_funcs judge format``.
- As an auxiliary term: ``--reward_funcs accuracy format judge --reward_weights 1 1 0.3``.

``--reward_funcs`` must name ``judge``. The endpoint flags keep the spellings of the other
judge CLIs (``--judge-base-url --judge-model --judge-api-key-file --judge-timeout-s``, see
``ffr.endpoint.add_judge_args``) besides the config-field spelling (``--judge_base_url``); the
key is read from its file by ``ffr.endpoint.read_key_file``, which registers it for redaction.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Optional

from r1v import grpo
from r1v.config import GRPOConfig, GRPOScriptArguments, ModelConfig
from r1v.judge_reward import JudgeReward


def _flag(name: str, help: str) -> dict:
    """Field metadata: help text plus the dashed spelling of the shared judge flags."""
    return {"help": help, "aliases": ["--" + name.replace("_", "-")]}


@dataclass
class JudgeRewardArguments:
    """Where the judge model is and how the ``judge`` reward asks it (``r1v.judge_reward``)."""

    judge_base_url: str = field(default="", metadata=_flag(
        "judge_base_url", "OpenAI-compatible base URL of the judge model (.../v1)."))
    judge_model: str = field(default="", metadata=_flag("judge_model", "Judge model name at judge_base_url."))
    judge_api_key_file: Optional[str] = field(default=None, metadata=_flag(
        "judge_api_key_file", "File holding the judge endpoint's API key (never the key itself)."))
    judge_timeout_s: float = field(default=60.0, metadata=_flag("judge_timeout_s", "Timeout of one judge request."))
    judge_max_retries: int = field(
        default=3, metadata={"help": "Retries of a failed or unparseable judge request; after them the row is NaN "
                                     "(left out of its group's advantage statistics) and counted in "
                                     "rewards/judge_failed."})
    judge_backoff_s: float = field(
        default=1.0, metadata={"help": "Base of the exponential backoff between retries: backoff_s * 2**attempt."})
    judge_max_concurrency: int = field(default=16, metadata={"help": "Judge requests in flight at once."})
    judge_max_answer_chars: int = field(
        default=1000, metadata={"help": "Answers longer than this (characters) score 0 without a call."})
    judge_max_tokens: int = field(
        default=64, metadata={"help": "max_tokens of a judge reply (a score; raise it for reasoning judges)."})
    judge_temperature: float = field(default=0.0, metadata={"help": "Sampling temperature of the judge."})
    judge_extra_body: Optional[str] = field(
        default=None, metadata=_flag("judge_extra_body", "JSON object merged into judge requests, e.g. "
                                                         "'{\"chat_template_kwargs\": {\"enable_thinking\": false}}'."))
    judge_num_frames: int = field(
        default=0, metadata={"help": "Frames of the row's video sent to the judge as images (0 = text only)."})
    judge_cache_size: int = field(
        default=65536, metadata={"help": "Entries of the in-memory score cache (0 = no cache)."})
    judge_price_in_per_mtok: float = field(
        default=0.0, metadata={"help": "USD per million prompt tokens of the judge; with the output price it "
                                       "turns judge/tokens_in and judge/tokens_out into judge/cost_usd (0 = not logged)."})
    judge_price_out_per_mtok: float = field(
        default=0.0, metadata={"help": "USD per million completion tokens of the judge."})


def build_judge_reward(args: JudgeRewardArguments) -> JudgeReward:
    """The ``judge`` reward of the flags; ValueError naming the flag for an unusable value or key file."""
    from ffr.endpoint import json_object, read_key_file

    extra_body = None
    if args.judge_extra_body:
        try:
            extra_body = json_object(args.judge_extra_body)
        except argparse.ArgumentTypeError as exc:  # the CLI parser's error type; here a config error
            raise ValueError(f"--judge_extra_body: {exc}") from exc
    key = read_key_file(args.judge_api_key_file, "--judge_api_key_file") if args.judge_api_key_file else None
    return JudgeReward(
        args.judge_base_url, args.judge_model, api_key=key, timeout_s=args.judge_timeout_s,
        max_retries=args.judge_max_retries, backoff_s=args.judge_backoff_s,
        max_concurrency=args.judge_max_concurrency, max_answer_chars=args.judge_max_answer_chars,
        max_tokens=args.judge_max_tokens, temperature=args.judge_temperature, extra_body=extra_body,
        num_frames=args.judge_num_frames, cache_size=args.judge_cache_size,
        price_in_per_mtok=args.judge_price_in_per_mtok, price_out_per_mtok=args.judge_price_out_per_mtok)


def run(configs: tuple, extra_kwargs: Optional[dict] = None):
    """Train with parsed (GRPOScriptArguments, GRPOConfig, ModelConfig, JudgeRewardArguments)."""
    script_args, judge_args = configs[0], configs[3]
    if "judge" not in script_args.reward_funcs:
        raise ValueError(f"r1v.judge_grpo: --reward_funcs must name 'judge', got {script_args.reward_funcs}")
    return grpo.run(configs, extra_kwargs=extra_kwargs, named_rewards={"judge": build_judge_reward(judge_args)})


def parse_args(argv: Optional[list[str]] = None) -> tuple:
    """The four config dataclasses; a bad flag or value exits with status 2 naming it."""
    return grpo.parse_cli((GRPOScriptArguments, GRPOConfig, ModelConfig, JudgeRewardArguments), argv,
                          prog="r1v.judge_grpo")


def main(argv: Optional[list[str]] = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
