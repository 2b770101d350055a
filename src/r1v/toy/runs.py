"""One (method, seed) run of the toy experiment: the method's own entry-point config and trainer,
from the warm student, with greedy held-out evaluation every ``eval_every`` steps.

``python -m r1v.toy.runs --protocol P --warm WARM_DIR --method grpo|ffr|tgrpo --seed S --out DIR
[--teacher-url URL]`` parses the same dataclasses as ``r1v.grpo`` / ``ffr.train`` / ``r1v.tgrpo``
(so the run is what those commands would run), trains with their trainer class, and writes into
``DIR``: ``run_config.json``, ``metrics.jsonl`` (the trainer's), ``heldout.jsonl`` (one line per
evaluation: step, accuracy, per-scenario accuracy, cumulative generated tokens, wall seconds) and,
last, ``summary.json`` (its presence marks the run as finished; the replication resumes from it).
Every method gets the same steps, data order (the seed), batch and hyper-parameters.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from transformers import TrainerCallback

from r1v.config import write_run_config
from r1v.toy.heldout import HeldOut
from r1v.toy.protocol import ToyProtocol, load_protocol
from r1v.toy.warm_start import read_jsonl, vision_config, vision_flags

logger = logging.getLogger("r1v.toy.runs")

FFR_KEYS = ("ffr/intervention_ratio", "ffr/patch_coverage", "ffr/fix_rate", "ffr/chosen_patched_frac")


def method_spec(method: str):
    """(config dataclasses, trainer class, entry-point name) of a method."""
    from r1v.config import GRPOConfig, GRPOScriptArguments, ModelConfig

    if method == "grpo":
        from r1v.trainer.grpo_trainer import Qwen2VLGRPOTrainer

        return (GRPOScriptArguments, GRPOConfig, ModelConfig), Qwen2VLGRPOTrainer, "r1v.grpo"
    if method == "ffr":
        from ffr.train import FFRGRPOConfig
        from ffr.trainer import FFRTrainer

        return (GRPOScriptArguments, FFRGRPOConfig, ModelConfig), FFRTrainer, "ffr.train"
    if method == "tgrpo":
        from r1v.trainer.tgrpo import TGRPOConfig, TGRPOTrainer

        return (GRPOScriptArguments, TGRPOConfig, ModelConfig), TGRPOTrainer, "r1v.tgrpo"
    raise ValueError(f"unknown method {method!r}; expected grpo, ffr or tgrpo")


def run_argv(protocol: ToyProtocol, warm: Path, method: str, seed: int, out: Path, teacher_url: str | None) -> list[str]:
    """The flags of the method's entry point for this run (shared settings first, then the method's own)."""
    rl = protocol.rl
    argv = ["--model_name_or_path", str(warm / "student"), "--dataset_name", str(warm / "data" / "rl.jsonl"),
            "--output_dir", str(out), "--max_steps", str(rl.max_steps),
            "--per_device_train_batch_size", str(rl.per_device_train_batch_size),
            "--num_generations", str(rl.num_generations), "--learning_rate", str(rl.learning_rate),
            "--lr_scheduler_type", "constant", "--warmup_steps", "0", "--beta", str(rl.beta),
            "--temperature", str(rl.temperature), "--top_p", str(rl.top_p),
            "--max_completion_length", str(rl.max_completion_length), "--reward_funcs", "accuracy", "format",
            "--use_cpu", "true", "--torch_dtype", "float32", "--attn_implementation", "sdpa", "--report_to", "none",
            "--save_strategy", "no", "--logging_steps", "1", "--seed", str(seed), "--dataloader_num_workers", "0",
            "--disable_tqdm", "true", *vision_flags(protocol)]
    if method == "ffr":
        if not teacher_url:
            raise ValueError("method ffr needs --teacher-url (the teacher service)")
        argv += ["--ffr_enable", "true", "--teacher_url", teacher_url, "--ffr_patch_tax", str(rl.ffr_patch_tax),
                 "--ffr_patch_log", "true"]
    return argv


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


def run_one(protocol: ToyProtocol, warm: Path, method: str, seed: int, out: Path, teacher_url: str | None) -> dict:
    """Train one run and write its files (module docstring); returns the summary."""
    from r1v.config import parse_config
    from r1v.grpo import build_trainer

    out.mkdir(parents=True, exist_ok=True)
    (out / "heldout.jsonl").unlink(missing_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)
    types, trainer_cls, entry = method_spec(method)
    configs = parse_config(types, run_argv(protocol, warm, method, seed, out, teacher_url))
    write_run_config(str(out), configs)
    held = HeldOut(read_jsonl(warm / "data" / "test.jsonl"), warm / "data", vision_config(protocol))
    callback = HeldOutCallback(held, protocol.rl.eval_every, out / "heldout.jsonl", protocol.rl.max_completion_length)
    start = time.perf_counter()
    trainer = build_trainer(*configs, trainer_cls=trainer_cls)
    callback.trainer = trainer
    trainer.add_callback(callback)
    trainer.train()
    metrics = read_jsonl(out / "metrics.jsonl") if (out / "metrics.jsonl").is_file() else []
    summary = {"method": method, "entry_point": entry, "seed": seed, "steps": protocol.rl.max_steps,
               "start_accuracy": callback.rows[0]["accuracy"], "final_accuracy": callback.rows[-1]["accuracy"],
               "final_by_scenario": callback.rows[-1]["by_scenario"],
               "curve": [{k: r[k] for k in ("step", "accuracy", "train_generated_tokens", "wall_s")}
                         for r in callback.rows],
               "generated_tokens": trainer.generated_tokens, "wall_s": round(time.perf_counter() - start, 1),
               "train_reward_accuracy": _mean_of(metrics, "rewards/accuracy")}
    if method == "ffr":
        summary["ffr"] = {key: _mean_of(metrics, key) for key in FFR_KEYS}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="One (method, seed) run of the toy experiment.")
    p.add_argument("--protocol", required=True, help="Protocol YAML (experiments/toy/protocol_v*.yaml).")
    p.add_argument("--warm", required=True, help="Warm-start folder (r1v.toy.warm_start).")
    p.add_argument("--method", required=True, choices=["grpo", "ffr", "tgrpo"])
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="Run folder.")
    p.add_argument("--teacher-url", default=None, help="Teacher service URL (method ffr).")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        protocol = load_protocol(a.protocol)
    except (OSError, ValueError) as exc:
        p.error(f"--protocol: {exc}")
    run_one(protocol, Path(a.warm), a.method, a.seed, Path(a.out), a.teacher_url)


if __name__ == "__main__":
    main()
