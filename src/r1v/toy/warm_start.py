"""The toy experiment's warm start: data splits, a random tiny student, and ``r1v.sft`` on the warm split.

``build_warm_start(protocol, cache_root)`` returns ``cache_root/warm-<protocol.warm_key()>/``,
building it once (in a temporary folder renamed when complete, so a killed build is redone):
    data/{warm,rl,test}.jsonl (+ videos/)   the three splits, disjoint seeds (and pretrain.jsonl)
    sft.jsonl                               warm split as SFT records (``process`` + gold answer)
    student/                                the warm student (a checkpoint loaded by path)
    warm_start.json                         held-out accuracy of the random and the warm student,
                                            the settings hash, times

A pretrained VLM already reads instructions; a tiny one does not. So a share
(``warm_start.evidence_share``) of the warm items carry, before their question, the evidence block
exactly as FFR's second round renders it (``ffr.patch.render_patch`` of the annotation patch),
with the item's own gold answer: this is the toy's stand-in for instruction following, so the
student can read a patch when the teacher sends one. No vision pre-training stage is needed at
these sizes: the student learns to see the 56-pixel cells during SFT.
"""
from __future__ import annotations

import json
import logging
import random
import shutil
import time
from pathlib import Path

import torch

from ffr.patch import evidence_to_patch, render_evidence_block
from r1v.toy.heldout import HeldOut
from r1v.toy.protocol import ToyProtocol
from r1v.toy.tiny import build_tiny_model, save_tiny_checkpoint
from r1v.toy.world import PRETRAIN_SCENARIO, generate_split
from r1v.vision import VisionConfig, load_video

logger = logging.getLogger(__name__)


def vision_config(protocol: ToyProtocol) -> VisionConfig:
    """Every frame of a clip, at its full size (the world is drawn at the size the student sees)."""
    w = protocol.world
    pixels = w.size * w.size
    return VisionConfig(fps=float(w.fps), min_frames=w.n_frames, max_frames=w.n_frames, video_min_pixels=pixels,
                        video_max_pixels=pixels)


def vision_flags(protocol: ToyProtocol) -> list[str]:
    """The same policy as trainer flags (``r1v.config`` names)."""
    cfg = vision_config(protocol)
    return ["--fps", str(cfg.fps), "--max_frames", str(cfg.max_frames), "--min_frames", str(cfg.min_frames),
            "--video_max_pixels", str(cfg.video_max_pixels), "--video_min_pixels", str(cfg.video_min_pixels)]


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def with_evidence_block(record: dict, timestamps: list[float]) -> dict:
    """A copy of ``record`` whose question starts with the rendered annotation patch.

    ``build_prompt_text`` of the result equals ``render_patch(build_prompt_text(record), patch,
    timestamps)``: the block, a blank line, then the question text verbatim (the prompt starts with
    the question).
    """
    patch = evidence_to_patch(record["evidence"], timestamps, use_gt=True)
    block = render_evidence_block(patch, timestamps)
    return {**record, "problem": f"{block}\n\n{record['problem']}", "ffr_evidence_block": True}


def sft_records(protocol: ToyProtocol, data: Path, split: str = "warm", evidence_share: float | None = None) -> list[dict]:
    """A split as SFT records; a seeded share of them (default ``warm_start.evidence_share``) carry the evidence block."""
    ws = protocol.warm_start
    share = ws.evidence_share if evidence_share is None else evidence_share
    rng = random.Random(ws.seed)
    cfg = vision_config(protocol)
    out = []
    for rec in read_jsonl(data / f"{split}.jsonl"):
        if rng.random() < share:
            rec = with_evidence_block(rec, load_video(data / rec["path"], cfg).timestamps)
        out.append({**rec, "process": ws.think})
    return out


def sft_argv(protocol: ToyProtocol, init: Path, sft_jsonl: Path, out: Path, steps: int) -> list[str]:
    ws = protocol.warm_start
    return ["--model_name_or_path", str(init), "--dataset_name", str(sft_jsonl), "--output_dir", str(out),
            "--max_steps", str(steps), "--per_device_train_batch_size", str(ws.batch_size),
            "--learning_rate", str(ws.learning_rate), "--lr_scheduler_type", "constant", "--warmup_steps", "0",
            "--weight_decay", "0", "--use_cpu", "true", "--torch_dtype", "float32", "--report_to", "none",
            "--save_strategy", "no", "--logging_steps", "25", "--dataloader_num_workers", "0",
            "--seed", str(ws.seed), "--disable_tqdm", "true", *vision_flags(protocol)]


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _evaluate(path: Path, held: HeldOut) -> dict:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    return held.evaluate(model, AutoProcessor.from_pretrained(path))


def build_warm_start(protocol: ToyProtocol, cache_root: str | Path) -> Path:
    """The cached warm-start folder for ``protocol`` (see the module docstring); built when absent."""
    from r1v.sft import main as sft_main

    final = Path(cache_root) / f"warm-{protocol.warm_key()}"
    if (final / "warm_start.json").is_file():
        logger.info("warm start %s is cached", final)
        return final
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    start = time.perf_counter()
    ws = protocol.warm_start
    for name, (n, seed) in protocol.splits.items():
        generate_split(tmp / "data", n, seed, protocol.world, name=name,
                       scenario=PRETRAIN_SCENARIO if name == "pretrain" else None)
    records = sft_records(protocol, tmp / "data")
    sft_jsonl = _write_jsonl(tmp / "data" / "sft.jsonl", records)
    model, processor = build_tiny_model("qwen2_5_vl", ws.seed, size=protocol.student)
    init = save_tiny_checkpoint(model, processor, tmp / "student_init")
    held = HeldOut(read_jsonl(tmp / "data" / "test.jsonl"), tmp / "data", vision_config(protocol))
    random_eval = held.evaluate(model, processor)
    pretrain_eval = None
    if ws.pretrain_steps:
        pre_jsonl = _write_jsonl(tmp / "data" / "sft_pretrain.jsonl",
                                 sft_records(protocol, tmp / "data", "pretrain", evidence_share=0.0))
        sft_main(sft_argv(protocol, init, pre_jsonl, tmp / "student_pretrained", ws.pretrain_steps))
        init = tmp / "student_pretrained"
        pretrain_eval = _evaluate(init, held)
    sft_main(sft_argv(protocol, init, sft_jsonl, tmp / "student", ws.steps))
    warm_eval = _evaluate(tmp / "student", held)
    summary = {"warm_key": protocol.warm_key(), "protocol_version": protocol.version,
               "params": sum(p.numel() for p in model.parameters()),
               "evidence_items": sum(bool(r.get("ffr_evidence_block")) for r in records),
               "random_student": random_eval, "pretrained_student": pretrain_eval, "warm_student": warm_eval,
               "seconds": round(time.perf_counter() - start, 1)}
    (tmp / "warm_start.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    logger.info("warm start built in %.0f s: held-out accuracy %.3f (random %.3f)", summary["seconds"],
                warm_eval["accuracy"], random_eval["accuracy"])
    return final
