"""Run configuration for the GRPO trainer: three dataclasses parsed together.

Names follow R1-V / TRL so their launch scripts translate directly:
``GRPOScriptArguments`` (data and rewards), ``GRPOConfig`` (``TrainingArguments``
plus the GRPO knobs) and ``ModelConfig`` (checkpoint and attention kernel).
A YAML file and CLI flags are merged by :func:`parse_config` (CLI wins).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml
from transformers import HfArgumentParser, TrainingArguments
from transformers.trainer_utils import SchedulerType
from transformers.utils import is_torch_bf16_gpu_available

# Re-exported: the run-config writer and the secret rule are part of every entry point's config API.
from r1v.run_config import (  # noqa: F401
    REDACTED, SECRET_FIELDS, git_commit, is_secret_field, redact_argv, secret_field_names, write_run_config,
)

logger = logging.getLogger(__name__)


@dataclass
class GRPOScriptArguments:
    """Data, reward and vision settings (R1-V's ``GRPOScriptArguments``)."""

    dataset_name: str = field(
        default="", metadata={"help": "Training data: a Video-R1 JSON/JSONL file or a YAML mixture in data_configs/."}
    )
    data_root: Optional[str] = field(
        default=None,
        metadata={"help": "Root that relative media paths of a JSON/JSONL dataset_name resolve against (default: the "
                          "JSON's folder). Refused with a YAML mixture, whose entries set their own data_root."},
    )
    data_on_error: str = field(
        default="raise",
        metadata={"help": "Bad record at load time (malformed, missing media, answer not among the option letters or "
                          "not a number, repeated problem_id): 'raise' (name file, line and problem_id) or 'skip' "
                          "(log, count)."},
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["accuracy", "format"],
        metadata={"help": "Reward functions by name from r1v.rewards.REWARD_FUNCS, summed (weighted) into the reward."},
    )
    reward_weights: Optional[list[float]] = field(
        default=None, metadata={"help": "One weight per reward function (default: all 1.0)."}
    )
    max_pixels: int = field(default=401408, metadata={"help": "Max pixels of an image input (R1-V name)."})
    min_pixels: int = field(default=3136, metadata={"help": "Min pixels of an image input (R1-V name)."})
    video_max_pixels: int = field(default=128 * 28 * 28, metadata={"help": "Max pixels per sampled video frame."})
    video_min_pixels: int = field(default=128 * 28 * 28, metadata={"help": "Min pixels per sampled video frame."})
    fps: float = field(default=2.0, metadata={"help": "Frame sampling rate (frames per second of video)."})
    min_frames: int = field(default=4, metadata={"help": "Fewest frames sampled from a video."})
    max_frames: int = field(default=16, metadata={"help": "Most frames sampled from a video (paper: 16)."})
    video_backend: str = field(default="av", metadata={"help": "Video decoder: 'av' (PyAV) or 'decord'."})


@dataclass
class GRPOConfig(TrainingArguments):
    """``TrainingArguments`` plus GRPO's knobs (TRL names).

    Every default is the paper's App. D.4 value, so a run without ``--config`` is the
    paper's run: the optimisation fields below override ``TrainingArguments``' generic
    defaults (lr 5e-5 linear, 3 epochs, batch 8, grad-norm 1.0, no bf16).
    """

    # Optimisation (paper App. D.4); TrainingArguments' fields, re-declared for their defaults.
    learning_rate: float = field(default=5e-6, metadata={"help": "Peak learning rate (paper: 5e-6)."})
    lr_scheduler_type: SchedulerType | str = field(default="cosine", metadata={"help": "Learning-rate schedule (paper: cosine)."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (paper: 0.01)."})
    per_device_train_batch_size: int = field(
        default=1, metadata={"help": "Prompts per device per micro-step; each yields num_generations rollouts (paper: 1)."}
    )
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-steps per optimizer step (paper: 1)."})
    max_grad_norm: float = field(default=5.0, metadata={"help": "Gradient-norm clip (paper: 5.0)."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Passes over the training data (paper: 1)."})
    bf16: Optional[bool] = field(
        default=None,
        metadata={"help": "bf16 mixed precision (paper: on). Unset: on when the GPU supports bf16 and use_cpu is "
                          "off, else off (CPU runs stay fp32). --bf16 alone means true.",
                  "nargs": "?", "const": True},
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep every record field: rewards and prompts read them (must stay False)."}
    )
    num_generations: int = field(default=8, metadata={"help": "G: rollouts sampled per prompt (paper: 8)."})
    max_prompt_length: Optional[int] = field(
        default=16384, metadata={"help": "Prompts longer than this (tokens, visual tokens included) are rejected."}
    )
    max_completion_length: int = field(default=1024, metadata={"help": "Max new tokens per rollout (paper: 1024)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of rollouts (paper: 1.0)."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling of rollouts (paper: 0.95)."})
    top_k: int = field(default=0, metadata={"help": "Top-k sampling of rollouts (0 = off)."})
    repetition_penalty: float = field(default=1.0, metadata={"help": "Repetition penalty of rollouts (1.0 = off)."})
    beta: float = field(default=0.04, metadata={"help": "KL coefficient to the frozen reference (0 = no reference model)."})
    epsilon: float = field(default=0.2, metadata={"help": "Lower clip range of the ratio: 1 - epsilon (Eq. 11)."})
    epsilon_high: Optional[float] = field(
        default=None, metadata={"help": "Upper clip range: 1 + epsilon_high (default: epsilon)."}
    )
    num_iterations: int = field(
        default=1, metadata={"help": "mu: optimizer steps per generated batch; >1 stores old log-probs so the clip is real."}
    )
    loss_type: str = field(
        default="grpo",
        metadata={"help": "'grpo': mean over each sequence's tokens, then over sequences (R1-V); 'bnpo': mean over "
                          "all tokens; 'dr_grpo': sum over all tokens / (rows x max_completion_length) (TRL's Dr. GRPO)."},
    )
    advantage_scope: str = field(
        default="group",
        metadata={"help": "Standardise rewards within each group of G ('group', paper) or across the global batch "
                          "('batch': mean/std over every rank's rollouts of the step, all-reduced)."},
    )
    advantage_eps: float = field(default=1e-4, metadata={"help": "eps in (r - mean) / (std + eps) (R1-V value)."})
    ds3_gather_for_generation: bool = field(
        default=True,
        metadata={"help": "Under ZeRO-3, gather all weights once per generation phase instead of per layer and token."},
    )
    log_completions: bool = field(
        default=True, metadata={"help": "Dump sampled completions to output_dir/completions/ at every logging step."}
    )
    num_completions_to_print: int = field(default=4, metadata={"help": "How many completions each dump keeps."})
    skipped_prompts_max_frac: float = field(
        default=0.5,
        metadata={"help": "Stop the run with an error when more than this fraction of a generated batch's prompts "
                          "(all ranks) is skipped (undecodable media, prompt over max_prompt_length) for "
                          "skipped_prompts_patience batches in a row. 1.0 = never stop."},
    )
    skipped_prompts_patience: int = field(
        default=3, metadata={"help": "Consecutive over-skipped generated batches that stop the run (>= 1)."}
    )

    def __post_init__(self):
        if self.bf16 is None:
            # "bf16 where supported": a CPU run (or a GPU without bf16) stays in fp32.
            self.bf16 = not self.use_cpu and not self.fp16 and is_torch_bf16_gpu_available()
        super().__post_init__()
        if self.epsilon_high is None:
            self.epsilon_high = self.epsilon
        self._check_grpo_fields()
        self._check_run_limits()
        if self.activation_checkpointing and self.activation_checkpointing_kwargs is None:
            # Non-reentrant checkpointing gives the same gradients and works with frozen inputs.
            self.activation_checkpointing_kwargs = self.gradient_checkpointing_kwargs = {"use_reentrant": False}

    def _check_grpo_fields(self) -> None:
        """Reject values that would train silently wrong; each error names its field.

        Comparisons are written so that NaN fails them too.
        """
        rules = [
            ("num_generations", self.num_generations >= 2, "must be >= 2 (advantages standardise within a group)"),
            ("num_iterations", self.num_iterations >= 1, "must be >= 1"),
            ("beta", self.beta >= 0.0, "must be >= 0 (KL coefficient; 0 = no reference model)"),
            ("epsilon", self.epsilon > 0.0, "must be > 0 (the ratio is clipped to [1 - epsilon, 1 + epsilon_high])"),
            ("epsilon_high", self.epsilon_high >= self.epsilon, f"must be >= epsilon ({self.epsilon})"),
            ("temperature", self.temperature > 0.0, "must be > 0 (rollouts are sampled)"),
            ("top_p", 0.0 < self.top_p <= 1.0, "must lie in (0, 1]"),
            ("max_completion_length", self.max_completion_length >= 1, "must be >= 1"),
        ]
        for name, ok, rule in rules:
            if not ok:
                raise ValueError(f"{name}: {rule}, got {getattr(self, name)!r}")
        choices = {"loss_type": ("grpo", "bnpo", "dr_grpo"), "advantage_scope": ("group", "batch")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: must be one of {list(allowed)}, got {getattr(self, name)!r}")

    def _check_run_limits(self) -> None:
        """Refuse a run that would train nothing (max_steps 0, 0 epochs) and bad skip limits."""
        check_trains_something(self)
        if not 0.0 <= self.skipped_prompts_max_frac <= 1.0:
            raise ValueError(f"skipped_prompts_max_frac: must lie in [0, 1], got {self.skipped_prompts_max_frac!r}")
        if self.skipped_prompts_patience < 1:
            raise ValueError(f"skipped_prompts_patience: must be >= 1, got {self.skipped_prompts_patience!r}")


def check_trains_something(args: TrainingArguments) -> None:
    """Raise ValueError (naming the field) when ``args`` would train nothing.

    The one rule of every training entry point (GRPO, T-GRPO, FFR, SFT): ``max_steps`` is a
    positive number of optimizer steps, or -1 with ``num_train_epochs`` > 0. ``max_steps 0``
    would otherwise run a step at learning rate 0, save the unchanged weights and exit 0.
    """
    if args.max_steps == 0 or args.max_steps < -1:
        raise ValueError(f"max_steps: must be a positive number of optimizer steps, or -1 to train for "
                         f"num_train_epochs; got {args.max_steps!r}")
    if args.max_steps == -1 and not (args.num_train_epochs > 0 and math.isfinite(args.num_train_epochs)):
        raise ValueError(f"num_train_epochs: must be > 0 when max_steps is -1, got {args.num_train_epochs!r}")


@dataclass
class ModelConfig:
    """Which checkpoint to train (TRL's ``ModelConfig`` subset)."""

    model_name_or_path: str = field(default="", metadata={"help": "Checkpoint folder or hub id of the student."})
    torch_dtype: str = field(default="bfloat16", metadata={"help": "'bfloat16', 'float16', 'float32' or 'auto'."})
    attn_implementation: str = field(
        default="sdpa", metadata={"help": "'flash_attention_2' on GPU nodes with flash-attn, else 'sdpa' or 'eager'."}
    )
    freeze_vision_tower: bool = field(default=False, metadata={"help": "Keep the vision encoder's weights fixed."})


CLI_EPILOG = (
    "--config FILE.yaml (or --config=FILE.yaml): a YAML mapping of field names to values; flags given "
    "on the command line override it, and a YAML null sets an Optional field to None. "
    "--max_steps must be a positive number of optimizer steps, or -1 to train for num_train_epochs; "
    "0 is refused (a run that trains nothing). --data_root applies to a JSON/JSONL dataset_name only."
)


def _yaml_to_argv(path: str) -> tuple[list[str], list[str]]:
    """Turn a flat YAML mapping into ``--key value`` flags so CLI flags given later override it.

    Returns (flags, null_keys): a key whose value is YAML ``null`` (or empty) becomes no flag
    but is listed in ``null_keys`` (see :func:`_null_presets`).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--config: {path} does not exist")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"--config: {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config YAML must be a mapping of field names to values")
    argv: list[str] = []
    null_keys: list[str] = []
    for key, value in data.items():
        if value is None:
            null_keys.append(str(key))
        elif isinstance(value, list):
            argv += [f"--{key}", *[str(v) for v in value]]
        elif isinstance(value, dict):
            argv += [f"--{key}", json.dumps(value)]
        else:
            argv += [f"--{key}", str(value)]
    return argv, null_keys


def _split_config_flag(argv: list[str]) -> tuple[Optional[str], list[str]]:
    """Take ``--config PATH`` or ``--config=PATH`` out of argv; ValueError if it has no path or repeats."""
    path: Optional[str] = None
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg != "--config" and not arg.startswith("--config="):
            rest.append(arg)
            i += 1
            continue
        if path is not None:
            raise ValueError("--config is given more than once; give one YAML file")
        if arg == "--config":
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise ValueError("--config needs a YAML file path: --config run.yaml (or --config=run.yaml)")
            path, i = argv[i + 1], i + 2
        else:
            path, i = arg.split("=", 1)[1], i + 1
            if not path:
                raise ValueError("--config= needs a YAML file path: --config=run.yaml")
    return path, rest


def _null_presets(dataclass_types: tuple, null_keys: list[str], yaml_path: str) -> dict[str, Any]:
    """Values for YAML ``null`` keys: None for an Optional field; a non-Optional field keeps its default."""
    hints: dict[str, Any] = {}
    for dtype in dataclass_types:
        type_hints = typing.get_type_hints(dtype)
        hints.update({f.name: type_hints[f.name] for f in dataclasses.fields(dtype) if f.init})
    presets: dict[str, Any] = {}
    for key in null_keys:
        name = key.replace("-", "_")
        if name not in hints:
            raise ValueError(f"{yaml_path}: unknown key {key!r} (no such config field)")
        if type(None) in typing.get_args(hints[name]):
            presets[name] = None
        else:
            logger.warning("%s: %s is null but cannot be None; keeping its default", yaml_path, key)
    return presets


def parse_config(dataclass_types: tuple, argv: Optional[list[str]] = None) -> tuple:
    """Parse ``--config FILE.yaml`` / ``--config=FILE.yaml`` (optional) plus CLI flags into the dataclasses.

    CLI flags override the YAML. A YAML ``null`` sets an Optional field to None (CLI flags
    still override it); on any other field it keeps the default. Unknown keys in the YAML
    or on the command line raise ValueError, so a typo never silently keeps a default.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    yaml_path, argv = _split_config_flag(argv)
    presets: dict[str, Any] = {}
    if yaml_path is not None:
        yaml_argv, null_keys = _yaml_to_argv(yaml_path)
        presets = _null_presets(dataclass_types, null_keys, yaml_path)
        argv = yaml_argv + argv
    # No prefix matching: a misspelt key must fail, not silently hit a longer field name.
    parser = HfArgumentParser(dataclass_types, allow_abbrev=False, epilog=CLI_EPILOG)
    # argparse keeps attributes already on the namespace (instead of their defaults) unless a flag sets them.
    namespace, remaining = parser.parse_known_args(args=argv, namespace=argparse.Namespace(**presets))
    if remaining:
        raise ValueError(f"unknown flag(s) or YAML key(s): {remaining}")
    outputs = []
    for dtype in dataclass_types:
        keys = {f.name for f in dataclasses.fields(dtype) if f.init}
        outputs.append(dtype(**{k: v for k, v in vars(namespace).items() if k in keys}))
    return tuple(outputs)
