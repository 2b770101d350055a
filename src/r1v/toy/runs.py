"""One (method, seed) run of the toy experiment: the method's own entry-point config and trainer,
from the warm student, with greedy held-out evaluation every ``eval_every`` steps.

``python -m r1v.toy.runs --protocol P --warm WARM_DIR --method M --seed S --out DIR [--teacher-url
URL] [--judge-url URL] [--luffy-traces JSONL]`` parses the same dataclasses as the method's entry
point (``method_spec``: ``r1v.grpo``, ``ffr.train``, ``r1v.tgrpo``, ``r1v.luffy``, ``r1v.replay``,
``r1v.grpo --reward_funcs majority_vote``, ``r1v.judge_grpo``), so the run is what that command
would run, trains with its trainer class, and writes into
``DIR``: ``run_config.json``, ``metrics.jsonl`` (the trainer's), ``heldout.jsonl`` (one line per
evaluation: step, accuracy, per-scenario accuracy, cumulative generated tokens, wall seconds) and,
last, ``summary.json`` (its presence marks the run as finished; the replication resumes from it).
Every method gets the same steps, data order (the seed), batch and hyper-parameters; a Fig. 5
variant adds its launch script's flags (``VARIANT_FLAGS``).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback

from r1v.config import write_run_config
from r1v.toy.heldout import HeldOut
from r1v.toy.protocol import METHODS, ToyProtocol, load_protocol
from r1v.toy.variants import JUDGE_MODEL
from r1v.toy.warm_start import read_jsonl, vision_config, vision_flags

logger = logging.getLogger("r1v.toy.runs")

# Per-method diagnostics averaged over a run's logged steps into its summary.
DIAGNOSTICS = {
    "ffr": ("ffr/intervention_ratio", "ffr/patch_coverage", "ffr/fix_rate", "ffr/chosen_patched_frac"),
    "luffy": ("luffy/teacher_reward", "luffy/teacher_advantage", "luffy/trace_length"),
    "replay": ("replay/rows_per_prompt", "replay/reward", "replay/buffer_entries"),
    "majority": ("rewards/majority_label_acc", "rewards/majority_vote_share", "rewards/majority_no_label"),
    "judge": ("rewards/judge", "rewards/judge_failed", "judge/requests"),
}
# Each Fig. 5 variant runs with its launch script's settings (local_scripts/train_<variant>.sh). Where
# those are its config's defaults (RePO's FIFO and strategy, LUFFY's one trace) nothing is restated;
# these are the flags that replace shared ones: LUFFY's script turns the KL term off, majority vote
# and the judge replace the accuracy reward.
VARIANT_FLAGS = {
    "luffy": {"--beta": ["0.0"]},
    "majority": {"--reward_funcs": ["majority_vote", "format"]},
    "judge": {"--reward_funcs": ["judge", "format"], "--judge_model": [JUDGE_MODEL], "--judge_backoff_s": ["0.1"]},
}


@dataclass
class MethodSpec:
    """How the toy runs a method: its entry point's config dataclasses and trainer class."""

    types: tuple
    trainer_cls: type
    entry: str


@dataclass
class Services:
    """What a run reaches outside its process: the teacher service (ffr), the judge (judge), the
    traces file (luffy)."""

    teacher_url: str | None = None
    judge_url: str | None = None
    luffy_traces: str | None = None


def method_spec(method: str) -> MethodSpec:
    """The entry point a method's run is the run of (see the module docstring)."""
    from r1v.config import GRPOConfig, GRPOScriptArguments, ModelConfig

    base = (GRPOScriptArguments, GRPOConfig, ModelConfig)
    if method in ("grpo", "majority"):  # majority vote is r1v.grpo with --reward_funcs majority_vote
        from r1v.trainer.grpo_trainer import Qwen2VLGRPOTrainer

        return MethodSpec(base, Qwen2VLGRPOTrainer, "r1v.grpo")
    if method == "ffr":
        from ffr.train import FFRGRPOConfig
        from ffr.trainer import FFRTrainer

        return MethodSpec((GRPOScriptArguments, FFRGRPOConfig, ModelConfig), FFRTrainer, "ffr.train")
    if method == "tgrpo":
        from r1v.trainer.tgrpo import TGRPOConfig, TGRPOTrainer

        return MethodSpec((GRPOScriptArguments, TGRPOConfig, ModelConfig), TGRPOTrainer, "r1v.tgrpo")
    if method == "luffy":
        from r1v.trainer.luffy import LuffyConfig, LuffyTrainer

        return MethodSpec((GRPOScriptArguments, LuffyConfig, ModelConfig), LuffyTrainer, "r1v.luffy")
    if method == "replay":
        from r1v.trainer.replay import ReplayConfig, ReplayTrainer

        return MethodSpec((GRPOScriptArguments, ReplayConfig, ModelConfig), ReplayTrainer, "r1v.replay")
    if method == "judge":
        from r1v.judge_grpo import JudgeRewardArguments
        from r1v.trainer.grpo_trainer import Qwen2VLGRPOTrainer

        return MethodSpec((*base, JudgeRewardArguments), Qwen2VLGRPOTrainer, "r1v.judge_grpo")
    raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")


def _method_flags(method: str, services: Services, rl) -> dict[str, list[str]]:
    """The method's own flags (they replace shared flags of the same name)."""
    flags = dict(VARIANT_FLAGS.get(method, {}))
    if method == "ffr":
        if not services.teacher_url:
            raise ValueError("method ffr needs --teacher-url (the teacher service)")
        flags.update({"--ffr_enable": ["true"], "--teacher_url": [services.teacher_url],
                      "--ffr_patch_tax": [str(rl.ffr_patch_tax)], "--ffr_patch_log": ["true"]})
    if method == "luffy":
        if not services.luffy_traces:
            raise ValueError("method luffy needs --luffy-traces (r1v.toy.variants.write_oracle_traces)")
        flags["--luffy_traces"] = [services.luffy_traces]
    if method == "judge":
        if not services.judge_url:
            raise ValueError("method judge needs --judge-url (r1v.toy.variants.serve_rule_judge)")
        flags["--judge_base_url"] = [services.judge_url]
    return flags


def run_argv(protocol: ToyProtocol, warm: Path, method: str, seed: int, out: Path, services: Services) -> list[str]:
    """The flags of the method's entry point for this run: the shared settings, the method's own
    replacing any of the same name."""
    rl = protocol.rl
    flags = {"--model_name_or_path": [str(warm / "student")], "--dataset_name": [str(warm / "data" / "rl.jsonl")],
             "--output_dir": [str(out)], "--max_steps": [str(rl.max_steps)],
             "--per_device_train_batch_size": [str(rl.per_device_train_batch_size)],
             "--num_generations": [str(rl.num_generations)], "--learning_rate": [str(rl.learning_rate)],
             "--lr_scheduler_type": ["constant"], "--warmup_steps": ["0"], "--beta": [str(rl.beta)],
             "--temperature": [str(rl.temperature)], "--top_p": [str(rl.top_p)],
             "--max_completion_length": [str(rl.max_completion_length)], "--reward_funcs": ["accuracy", "format"],
             "--use_cpu": ["true"], "--torch_dtype": ["float32"], "--attn_implementation": ["sdpa"],
             "--report_to": ["none"], "--save_strategy": ["no"], "--logging_steps": ["1"], "--seed": [str(seed)],
             "--dataloader_num_workers": ["0"], "--disable_tqdm": ["true"]}
    vision = vision_flags(protocol)
    flags.update({vision[i]: [vision[i + 1]] for i in range(0, len(vision), 2)})
    flags.update(_method_flags(method, services, rl))
    return [x for name, values in flags.items() for x in (name, *values)]


class HeldOutCallback(TrainerCallback):
    """Evaluates the policy on the held-out set at step 0, every ``every`` steps and at the last step."""

    def __init__(self, held: HeldOut, every: int, path: Path, max_new_tokens: int):
        self.held, self.every, self.path, self.max_new_tokens = held, every, path, max_new_tokens
        self.trainer = None  # set after the trainer is built (it counts the generated tokens)
        self.start = time.perf_counter()
        self.rows: list[dict] = []

    def _evaluate(self, step: int, model) -> None:
        row = {"step": step, **self.held.evaluate(model, self.trainer.processing_class,
                                                  max_new_tokens=self.max_new_tokens),
               "train_generated_tokens": self.trainer.generated_tokens,
               "wall_s": round(time.perf_counter() - self.start, 2)}
        self.rows.append(row)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        logger.info("step %d: held-out accuracy %.3f", step, row["accuracy"])

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._evaluate(0, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self._evaluate(state.global_step, model)


def _mean_of(rows: list[dict], key: str):
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return sum(values) / len(values) if values else None


def run_one(protocol: ToyProtocol, warm: Path, method: str, seed: int, out: Path, services: Services) -> dict:
    """Train one run and write its files (module docstring); returns the summary."""
    from r1v.config import parse_config
    from r1v.grpo import build_trainer

    out.mkdir(parents=True, exist_ok=True)
    (out / "heldout.jsonl").unlink(missing_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)
    spec = method_spec(method)
    configs = parse_config(spec.types, run_argv(protocol, warm, method, seed, out, services))
    write_run_config(str(out), configs)
    held = HeldOut(read_jsonl(warm / "data" / "test.jsonl"), warm / "data", vision_config(protocol))
    callback = HeldOutCallback(held, protocol.rl.eval_every, out / "heldout.jsonl", protocol.rl.max_completion_length)
    start = time.perf_counter()
    named = None
    if method == "judge":
        from r1v.judge_grpo import build_judge_reward

        named = {"judge": build_judge_reward(configs[3])}
    trainer = build_trainer(*configs[:3], trainer_cls=spec.trainer_cls, named_rewards=named)
    callback.trainer = trainer
    trainer.add_callback(callback)
    trainer.train()
    metrics = read_jsonl(out / "metrics.jsonl") if (out / "metrics.jsonl").is_file() else []
    summary = {"method": method, "entry_point": spec.entry, "seed": seed, "steps": protocol.rl.max_steps,
               "start_accuracy": callback.rows[0]["accuracy"], "final_accuracy": callback.rows[-1]["accuracy"],
               "final_by_scenario": callback.rows[-1]["by_scenario"],
               "curve": [{k: r[k] for k in ("step", "accuracy", "train_generated_tokens", "wall_s")}
                         for r in callback.rows],
               "generated_tokens": trainer.generated_tokens, "wall_s": round(time.perf_counter() - start, 1),
               "train_reward_accuracy": _mean_of(metrics, "rewards/accuracy")}
    if method in DIAGNOSTICS:
        summary["diagnostics"] = {key: _mean_of(metrics, key) for key in DIAGNOSTICS[method]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="One (method, seed) run of the toy experiment.")
    p.add_argument("--protocol", required=True, help="Protocol YAML (experiments/toy/protocol_v*.yaml).")
    p.add_argument("--warm", required=True, help="Warm-start folder (r1v.toy.warm_start).")
    p.add_argument("--method", required=True, choices=list(METHODS))
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="Run folder.")
    p.add_argument("--teacher-url", default=None, help="Teacher service URL (method ffr).")
    p.add_argument("--judge-url", default=None, help="Judge endpoint, .../v1 (method judge).")
    p.add_argument("--luffy-traces", default=None, help="Teacher traces JSONL (method luffy).")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        protocol = load_protocol(a.protocol)
    except (OSError, ValueError) as exc:
        p.error(f"--protocol: {exc}")
    run_one(protocol, Path(a.warm), a.method, a.seed, Path(a.out),
            Services(a.teacher_url, a.judge_url, a.luffy_traces))


if __name__ == "__main__":
    main()
