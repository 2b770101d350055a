"""The toy experiment's protocol: one YAML file fixes the world, the student, the warm start, the
RL settings shared by every method, the seeds and the metric (``experiments/toy/protocol_v*.yaml``).

``load_protocol(path)`` returns a ``ToyProtocol``; unknown keys and bad values are refused by
name. ``warm_key()`` hashes exactly what determines the warm start (world, splits, student, warm
start settings), so the cached warm student is rebuilt when, and only when, one of them changes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from r1v.toy.tiny import TinySize
from r1v.toy.world import ToyWorld

# The protocol's methods: GRPO, FFR and T-GRPO (Table 1), and the paper's Fig. 5 baselines.
METHODS = ("grpo", "ffr", "tgrpo", "luffy", "replay", "majority", "judge")


def _warm_modules():
    from r1v.toy import draw, tiny, warm_start, world

    return (world, draw, tiny, warm_start)


@dataclass(frozen=True)
class WarmStart:
    """Supervised warm start (``r1v.sft``) on the warm split."""

    steps: int = field(default=150, metadata={"help": "SFT optimizer steps on the warm split."})
    pretrain_steps: int = field(
        default=0, metadata={"help": "Vision pre-training steps (SFT on the pretrain split's attribute questions, "
                                     "before the warm split); 0: none."})
    batch_size: int = field(default=16, metadata={"help": "SFT examples per step."})
    learning_rate: float = field(default=2e-3, metadata={"help": "SFT learning rate (constant)."})
    evidence_share: float = field(
        default=0.3, metadata={"help": "Share of warm items whose prompt carries the evidence block as the "
                                       "second round renders it (the toy's stand-in for instruction following)."})
    think: str = field(default="<think>Let me look at the video.</think>", metadata={"help": "Reasoning target."})
    seed: int = field(default=0, metadata={"help": "Seed of the student's random weights and of the SFT order."})


@dataclass(frozen=True)
class RLSettings:
    """Settings shared by every method (same steps, data order, batch and hyper-parameters)."""

    methods: tuple[str, ...] = ("grpo", "ffr", "tgrpo")
    seeds: tuple[int, ...] = (0, 1, 2)
    max_steps: int = 60
    per_device_train_batch_size: int = 4
    num_generations: int = 4
    learning_rate: float = 2e-4
    beta: float = 0.04
    temperature: float = 1.0
    top_p: float = 1.0
    max_completion_length: int = 24
    eval_every: int = 10
    ffr_patch_tax: float = 0.3


@dataclass(frozen=True)
class ToyProtocol:
    version: int
    world: ToyWorld
    splits: dict[str, tuple[int, int]]
    student: TinySize
    warm_start: WarmStart
    rl: RLSettings
    metric: str = "greedy accuracy on the test split"

    def warm_key(self) -> str:
        """12-hex hash of everything that determines the warm student and the data: the settings and
        the source of the modules that draw the world, build the student and write the SFT records."""
        sources = [hashlib.sha256(Path(m.__file__).read_bytes()).hexdigest() for m in _warm_modules()]
        blob = json.dumps({"world": dataclasses.asdict(self.world), "splits": self.splits,
                           "student": dataclasses.asdict(self.student),
                           "warm_start": dataclasses.asdict(self.warm_start), "sources": sources}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _build(cls, values: dict | None, where: str):
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(names)}")
    for key, value in values.items():
        if isinstance(value, list):
            values[key] = tuple(value)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from exc


def load_protocol(path: str | Path) -> ToyProtocol:
    """Read and check a protocol YAML (see ``experiments/toy/protocol_v1.yaml``)."""
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    required = {"version", "world", "splits", "student", "warm_start", "rl"}
    missing = sorted(required - set(raw))
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing}")
    unknown = sorted(set(raw) - required - {"metric"})
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}")
    splits = {}
    names = ("warm", "rl", "test") + (("pretrain",) if "pretrain" in (raw["splits"] or {}) else ())
    unknown_splits = sorted(set(raw["splits"] or {}) - {"warm", "rl", "test", "pretrain"})
    if unknown_splits:
        raise ValueError(f"{path}: unknown split(s) {unknown_splits}")
    for name in names:
        value = (raw["splits"] or {}).get(name)
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value)):
            raise ValueError(f"{path}: splits.{name} must be [n_items, seed], got {value!r}")
        splits[name] = (value[0], value[1])
    if len({seed for _, seed in splits.values()}) != len(splits):
        raise ValueError(f"{path}: the splits need disjoint seeds, got {splits}")
    rl = _build(RLSettings, raw["rl"], f"{path}: rl")
    bad = sorted(set(rl.methods) - set(METHODS))
    if bad or not rl.seeds or rl.max_steps < 1 or rl.eval_every < 1:
        raise ValueError(f"{path}: rl needs methods among {METHODS} (got {bad or rl.methods}), seeds, "
                         "max_steps >= 1 and eval_every >= 1")
    ws = _build(WarmStart, raw["warm_start"], f"{path}: warm_start")
    if not 0.0 <= ws.evidence_share <= 1.0 or ws.steps < 1 or ws.pretrain_steps < 0:
        raise ValueError(f"{path}: warm_start needs steps >= 1, pretrain_steps >= 0 and 0 <= evidence_share <= 1")
    if (ws.pretrain_steps > 0) != ("pretrain" in splits):
        raise ValueError(f"{path}: warm_start.pretrain_steps > 0 and splits.pretrain go together")
    return ToyProtocol(version=int(raw["version"]), world=_build(ToyWorld, raw["world"], f"{path}: world"),
                       splits=splits, student=_build(TinySize, raw["student"], f"{path}: student"),
                       warm_start=ws, rl=rl, metric=str(raw.get("metric", ToyProtocol.metric)))
