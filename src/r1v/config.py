"""Run configuration for the GRPO trainer: three dataclasses parsed together.

Names follow R1-V / TRL so their launch scripts translate directly:
``GRPOScriptArguments`` (data and rewards), ``GRPOConfig`` (``TrainingArguments``
plus the GRPO knobs) and ``ModelConfig`` (checkpoint and attention kernel).
A YAML file and CLI flags are merged by :func:`parse_config` (CLI wins).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from transformers import HfArgumentParser, TrainingArguments

logger = logging.getLogger(__name__)


@dataclass
class GRPOScriptArguments:
    """Data, reward and vision settings (R1-V's ``GRPOScriptArguments``)."""

    dataset_name: str = field(
        default="", metadata={"help": "Training data: a Video-R1 JSON/JSONL file or a YAML mixture in data_configs/."}
    )
    data_root: Optional[str] = field(
        default=None, metadata={"help": "Root that relative media paths resolve against (default: the JSON's folder)."}
    )
    data_on_error: str = field(
        default="raise",
        metadata={"help": "Malformed record or missing media at load time: 'raise' (name the record) or 'skip' (log, count)."},
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
    """``TrainingArguments`` plus GRPO's knobs (TRL names; paper App. D.4 values in help)."""

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
        metadata={"help": "'grpo': mean over each sequence's tokens, then over sequences (R1-V); 'bnpo': mean over all tokens."},
    )
    advantage_scope: str = field(
        default="group", metadata={"help": "Standardise rewards within each group of G ('group') or across the batch ('batch')."}
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

    def __post_init__(self):
        super().__post_init__()
        if self.num_generations < 2:
            raise ValueError("num_generations must be >= 2 (advantages standardise within a group)")
        if self.loss_type not in ("grpo", "bnpo"):
            raise ValueError(f"loss_type must be 'grpo' or 'bnpo', got {self.loss_type!r}")
        if self.advantage_scope not in ("group", "batch"):
            raise ValueError(f"advantage_scope must be 'group' or 'batch', got {self.advantage_scope!r}")
        if self.num_iterations < 1:
            raise ValueError("num_iterations must be >= 1")
        if self.epsilon_high is None:
            self.epsilon_high = self.epsilon
        if self.activation_checkpointing and self.activation_checkpointing_kwargs is None:
            # Non-reentrant checkpointing gives the same gradients and works with frozen inputs.
            self.activation_checkpointing_kwargs = self.gradient_checkpointing_kwargs = {"use_reentrant": False}


@dataclass
class ModelConfig:
    """Which checkpoint to train (TRL's ``ModelConfig`` subset)."""

    model_name_or_path: str = field(default="", metadata={"help": "Checkpoint folder or hub id of the student."})
    torch_dtype: str = field(default="bfloat16", metadata={"help": "'bfloat16', 'float16', 'float32' or 'auto'."})
    attn_implementation: str = field(
        default="sdpa", metadata={"help": "'flash_attention_2' on GPU nodes with flash-attn, else 'sdpa' or 'eager'."}
    )
    freeze_vision_tower: bool = field(default=False, metadata={"help": "Keep the vision encoder's weights fixed."})


def _yaml_to_argv(path: str) -> list[str]:
    """Turn a flat YAML mapping into ``--key value`` flags so CLI flags given later override it."""
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config YAML must be a mapping of field names to values")
    argv: list[str] = []
    for key, value in data.items():
        if isinstance(value, list):
            argv += [f"--{key}", *[str(v) for v in value]]
        elif isinstance(value, dict):
            argv += [f"--{key}", json.dumps(value)]
        else:
            argv += [f"--{key}", str(value)]
    return argv


def parse_config(dataclass_types: tuple, argv: Optional[list[str]] = None) -> tuple:
    """Parse ``--config FILE.yaml`` (optional) plus CLI flags into the given dataclasses.

    Unknown keys in the YAML or on the command line raise, so a typo never silently
    keeps a default.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" in argv:
        i = argv.index("--config")
        yaml_path = argv[i + 1]
        argv = _yaml_to_argv(yaml_path) + argv[:i] + argv[i + 2 :]
    # No prefix matching: a misspelt key must fail, not silently hit a longer field name.
    parser = HfArgumentParser(dataclass_types, allow_abbrev=False)
    return parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=False)


def git_commit(repo_dir: Optional[str] = None) -> Optional[str]:
    """HEAD commit of the code's checkout (None outside a git checkout); '+dirty' marks local edits."""
    repo_dir = repo_dir or str(Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo_dir,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def write_run_config(output_dir: str, configs: tuple) -> Path:
    """Write every resolved field and the git commit to ``output_dir/run_config.json``."""
    resolved: dict[str, Any] = {"git_commit": git_commit(), "argv": sys.argv}
    for cfg in configs:
        resolved[type(cfg).__name__] = {
            f.name: _jsonable(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if not f.name.startswith("_")
        }
    os.makedirs(output_dir, exist_ok=True)
    path = Path(output_dir) / "run_config.json"
    path.write_text(json.dumps(resolved, indent=2, sort_keys=True))
    return path


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)
