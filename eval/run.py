"""Evaluate one checkpoint on any of the eight benchmarks (paper Tables 2, 16 and 17).

    python -m eval.run --model CKPT --benchmarks mvbench,mmvu --data-root-mvbench DIR \
        --data-root-mmvu DIR --protocol video-r1 --frames 16 --seed 42 --out OUT

Files under ``OUT``:
- ``run_config.json``: resolved arguments, git commit (null outside a git checkout), decoding.
- ``<bench>/predictions.jsonl``: one JSON object per sample (id, prompt, raw output, parsed
  answer, gold answer, score, categories, ...), in the benchmark's sample order.
- ``<bench>/summary.json``: the benchmark's ``aggregate`` (overall 0-100, n, n_unjudged,
  categories) plus n_expected, n_missing and the missing/unreadable items by id.

Launched with ``torchrun --nproc_per_node N`` the run is data-parallel: rank r takes every N-th
pending sample and appends to ``<bench>/predictions.rank{r}.jsonl``; after a barrier rank 0 merges
the shards into ``predictions.jsonl`` and writes the summary. Every batch is appended with one
``os.write`` on an O_APPEND descriptor and fsync'd (``eval.predictions``), so a killed run loses
at most the batch in flight; rerunning the same command skips the rows already on disk (a torn
last line is dropped). Resuming is refused, naming what changed, when the checkpoint's files, a
benchmark's data root, a sample or its media file differ from those the rows were made from
(``eval.fingerprint``); ``--restart`` discards the earlier results instead.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from eval import registry
from ffr.endpoint import add_judge_args, judge_endpoint
from eval.fingerprint import checkpoint_changes, checkpoint_fingerprint, sample_inputs, stale_rows
from eval.generation import (DecodingConfig, Generator, batch_seed, load_model, loaded_batches,
                             pick_device)
from eval.predictions import (PredictionWriter, atomic_write_text, merge_predictions, rank_file,
                              read_done, shard)

logger = logging.getLogger(__name__)

DEFAULT_PIXELS = 128 * 28 * 28  # paper setting: 16 frames at 128x28x28 pixels per frame
# Arguments that change predictions: resuming into an OUT written with other values is refused.
RESUME_KEYS = ("model", "protocol", "frames", "fps", "min_frames", "max_pixels", "min_pixels",
               "image_max_pixels", "temperature", "top_p", "top_k", "repetition_penalty",
               "max_new_tokens", "seed", "dtype", "attn", "formats", "subsets")


# ------------------------------------------------------------------ distributed
@dataclass
class Dist:
    """Rank layout; world 1 when not launched by torchrun."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (just ``[obj]`` when alone)."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


def init_dist() -> Dist:
    """Join the torchrun process group (NCCL with CUDA, else gloo) when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        per_node, gpus = int(os.environ.get("LOCAL_WORLD_SIZE", "1")), torch.cuda.device_count()
        if per_node > gpus:  # NCCL refuses two ranks on one GPU; say so before it does, obscurely
            raise SystemExit(f"{per_node} processes per node but {gpus} visible GPU(s)")
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank)


# ------------------------------------------------------------------ one benchmark
@dataclass
class Context:
    """What every benchmark of one run shares."""

    args: argparse.Namespace
    generator: Generator
    vision: Any  # r1v.vision.VisionConfig
    judge: Any = None


def make_row(sample, prompt: str, output: str, score: float | None, visual) -> dict:
    """One predictions.jsonl row; ``parsed`` is the ``<answer>`` content the scorers start from."""
    from r1v.answers import extract_answer

    return {"id": sample.id, "benchmark": sample.benchmark, "data_type": sample.data_type,
            "problem_type": sample.problem_type, "categories": sample.categories,
            "answer": sample.answer, "prompt": prompt, "output": output,
            "parsed": extract_answer(output), "score": score,
            "n_frames": len(visual.timestamps) if hasattr(visual, "timestamps") else None,
            "extra": sample.extra, "inputs": sample_inputs(sample)}


def pending_samples(samples: list, bench_dir: Path) -> list:
    """Samples with a media file and no row on disk yet, in sample order.

    Raises SystemExit naming the items when a row on disk was made from other inputs (the sample
    or its media file changed since, see ``eval.fingerprint``): such rows would be silently mixed
    into the new results.
    """
    done = read_done(bench_dir)
    stale = stale_rows(samples, done)
    if stale:
        shown = "; ".join(f"{i}: {why}" for i, why in stale[:5])
        more = f" (+{len(stale) - 5} more)" if len(stale) > 5 else ""
        raise SystemExit(f"{bench_dir}: {len(stale)} prediction row(s) were made from other inputs: {shown}{more}; "
                         "rerun with --restart to discard the earlier results, or use another --out")
    return [s for s in samples if s.media_path is not None and s.id not in done]


def generate_shard(ctx: Context, name: str, pending: list, bench_dir: Path, rank: int,
                   world: int) -> list[dict]:
    """Generate and score rank ``rank``'s share of ``pending``; returns the unreadable items.

    Rows are appended to this rank's file, one write + fsync per batch.
    """
    module = registry.get_benchmark(name)
    mine = shard(pending, rank, world)
    size = ctx.args.batch_size
    batches = [mine[i:i + size] for i in range(0, len(mine), size)]
    failures: list[dict] = []
    writer = PredictionWriter(rank_file(bench_dir, rank, world))
    bar = tqdm(total=len(mine), desc=f"{name} [rank {rank}]", disable=rank != 0, dynamic_ncols=True)
    try:
        for batch, loaded in loaded_batches(batches, ctx.vision, ctx.args.num_workers):
            ready = []
            for sample, (visual, error) in zip(batch, loaded):
                if error is None:
                    ready.append((sample, visual))
                    continue
                if ctx.args.strict:
                    raise RuntimeError(f"{name} item {sample.id}: {error}")
                logger.error("%s item %s: %s", name, sample.id, error)
                failures.append({"id": sample.id, "reason": error})
            if ready:
                _run_batch(ctx, module, ready, writer)
            bar.update(len(batch))
    finally:
        bar.close()
        writer.close()
    return failures


def _run_batch(ctx: Context, module, ready: list[tuple], writer: PredictionWriter) -> None:
    from r1v.inputs import encode_prompts

    protocol = ctx.args.protocol
    prompts = [module.build_prompt(s, protocol=protocol) for s, _ in ready]
    inputs = encode_prompts(ctx.generator.processor, prompts, [v for _, v in ready], vision_cfg=ctx.vision)
    outputs = ctx.generator.generate(inputs, batch_seed(ctx.args.seed, [s.id for s, _ in ready]))
    writer.write([make_row(s, p, o, module.score(o, s, protocol=protocol, judge=ctx.judge), v)
                  for (s, v), p, o in zip(ready, prompts, outputs)])


def finalize(ctx: Context, name: str, samples: list, bench_dir: Path, failures: list[dict]) -> dict:
    """Merge the shards and write ``summary.json`` (rank 0 only). Returns the summary."""
    module = registry.get_benchmark(name)
    rows = merge_predictions(bench_dir, [s.id for s in samples])
    summary = module.aggregate(rows, protocol=ctx.args.protocol)
    missing = [{"id": s.id, "reason": f"missing {s.data_type} file"} for s in samples if s.media_path is None]
    missing += sorted(failures, key=lambda f: f["id"])
    summary.update({
        "benchmark": name, "protocol": ctx.args.protocol, "label": ctx.args.label,
        "n_expected": len(samples), "n_missing": len(missing), "missing": missing,
        "frames": ctx.args.frames, "max_pixels": ctx.args.max_pixels, "seed": ctx.args.seed,
    })
    atomic_write_text(bench_dir / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary


def load_samples(args: argparse.Namespace, name: str) -> list:
    """The benchmark's samples; missing media kept with media_path None unless --strict."""
    module = registry.get_benchmark(name)
    samples = module.load(args.data_roots[name], fmt=args.formats[name], subset=args.subsets[name],
                          on_error="raise" if args.strict else "keep")
    return samples[: args.max_samples] if args.max_samples else samples


def run_benchmark(ctx: Context, name: str, d: Dist) -> dict | None:
    """Evaluate one benchmark on all ranks; rank 0 returns the summary, others None."""
    bench_dir = Path(ctx.args.out) / name
    bench_dir.mkdir(parents=True, exist_ok=True)
    samples = load_samples(ctx.args, name)
    start = time.perf_counter()
    pending = pending_samples(samples, bench_dir)
    d.barrier()  # all ranks read the files before any appends, so all shard the same pending list
    failures = generate_shard(ctx, name, pending, bench_dir, d.rank, d.world)
    failures = [f for part in d.gather(failures) for f in part]  # collective: also a barrier
    summary = finalize(ctx, name, samples, bench_dir, failures) if d.rank == 0 else None
    d.barrier()
    logger.info("%s done in %.1f s", name, time.perf_counter() - start)
    return summary


# ------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="HF checkpoint folder (model + processor).")
    p.add_argument("--label", default=None, help="Row name in reports (default: the folder name).")
    p.add_argument("--out", required=True, help="Output folder (resumed when it exists).")
    p.add_argument("--benchmarks", default=",".join(registry.BENCHMARKS), help="Comma-separated names.")
    p.add_argument("--protocol", default="video-r1", choices=("video-r1", "official"))
    p.add_argument("--frames", type=int, default=16, help="Max frames per video (Table 16: 16/32/64).")
    p.add_argument("--fps", type=float, default=2.0, help="Frame sampling rate before the cap.")
    p.add_argument("--min-frames", type=int, default=4)
    p.add_argument("--max-pixels", type=int, default=DEFAULT_PIXELS, help="Pixels per video frame.")
    p.add_argument("--min-pixels", type=int, default=None, help="Default: --max-pixels (as Video-R1).")
    p.add_argument("--image-max-pixels", type=int, default=401408)
    for name, value in DecodingConfig.__dataclass_fields__.items():
        p.add_argument("--" + name.replace("_", "-"), type=type(value.default), default=value.default,
                       help=value.metadata["help"])
    p.add_argument("--seed", type=int, default=42, help="Sampling seed (Table 17: 42, 123, 456).")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-workers", type=int, default=4, help="Threads decoding the next batch.")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU) or a torch dtype.")
    p.add_argument("--attn", default="sdpa", help="attn_implementation passed to from_pretrained.")
    p.add_argument("--max-samples", type=int, default=None, help="Only the first N samples (smoke runs).")
    p.add_argument("--strict", action="store_true", help="Fail on missing/unreadable media.")
    p.add_argument("--restart", action="store_true",
                   help="Discard every earlier result in --out (run_config.json, predictions, summaries) and "
                        "start over, instead of resuming; needed when the checkpoint or data changed.")
    # The judge flags of every FFR tool (ffr.endpoint); this judge grades answers, so no blind-test flags.
    add_judge_args(p, blind=False)
    p.add_argument("--log-level", default="INFO")
    for name in registry.BENCHMARKS:
        g = p.add_argument_group(name)
        g.add_argument(f"--data-root-{name}", default=None, help=f"{name} data folder.")
        g.add_argument(f"--data-format-{name}", default="official", choices=("official", "video-r1"))
        g.add_argument(f"--subset-{name}", default=None)
    return p


def resolve_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check arguments; per-benchmark options become dicts keyed by benchmark."""
    args = build_parser().parse_args(argv)
    args.benchmarks = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    for name in args.benchmarks:
        registry.get_benchmark(name)  # unknown names raise, listing the known ones
    args.model = os.path.abspath(args.model)
    args.label = args.label or os.path.basename(args.model.rstrip("/"))
    args.min_pixels = args.max_pixels if args.min_pixels is None else args.min_pixels
    key = lambda n: n.replace("-", "_")  # noqa: E731
    args.data_roots = {n: getattr(args, key(f"data_root_{n}")) for n in args.benchmarks}
    args.data_roots = {n: root and os.path.abspath(root) for n, root in args.data_roots.items()}
    args.formats = {n: getattr(args, key(f"data_format_{n}")) for n in args.benchmarks}
    args.subsets = {n: getattr(args, key(f"subset_{n}")) for n in args.benchmarks}
    absent = [n for n, root in args.data_roots.items() if not root]
    if absent:
        raise SystemExit(f"missing --data-root-<name> for: {', '.join(absent)}")
    try:
        judge_endpoint(args)  # bad judge flags or key file fail before the model loads (built in build_context)
    except ValueError as exc:  # KeyFileError included: one line naming the flag and the file
        raise SystemExit(str(exc)) from exc
    if args.batch_size < 1:
        raise SystemExit("--batch-size must be >= 1")
    return args


def git_commit() -> str | None:
    """HEAD of the checkout holding this file, or None outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def check_config(args: argparse.Namespace) -> None:
    """Refuse to resume into an OUT whose run_config.json has other prediction-changing settings,
    another data root for a benchmark both runs evaluate, or a checkpoint whose files changed."""
    path = Path(args.out) / "run_config.json"
    if not path.exists():
        return
    written = json.loads(path.read_text())
    old, new = written["args"], vars(args)
    # formats/subsets/data roots only have to agree for the benchmarks both invocations ran
    common = sorted(set(old.get("benchmarks", [])) & set(args.benchmarks))
    clash = [k for k in RESUME_KEYS if k not in ("formats", "subsets") and old.get(k) != new[k]]
    clash += [f"{k}[{n}]" for k in ("formats", "subsets", "data_roots") for n in common
              if old.get(k, {}).get(n) != new[k][n]]
    again = "use another --out, or --restart to discard its results"
    if clash:
        raise SystemExit(f"{path} was written with different settings ({', '.join(clash)}); {again}")
    changed = checkpoint_changes(written.get("checkpoint_fingerprint"), checkpoint_fingerprint(args.model))
    if changed:
        raise SystemExit(f"{path}: the checkpoint {args.model} changed since its predictions were made "
                         f"({'; '.join(changed)}); {again}")


def discard_results(args: argparse.Namespace) -> None:
    """``--restart``: delete run_config.json and the predictions and summary of every benchmark it
    lists or that this run evaluates (other files in OUT are left alone)."""
    out = Path(args.out)
    path = out / "run_config.json"
    listed = json.loads(path.read_text())["args"].get("benchmarks", []) if path.exists() else []
    removed = [path] if path.exists() else []
    for name in dict.fromkeys(listed + args.benchmarks):
        bench_dir = out / name
        removed += [p for p in [*bench_dir.glob("predictions*.jsonl"), bench_dir / "summary.json"] if p.exists()]
    for p in removed:
        p.unlink()
    logger.warning("--restart: removed %d earlier result file(s) from %s", len(removed), out)


def write_config(args: argparse.Namespace, extra: dict) -> None:
    """Record resolved arguments, git commit and decoding in run_config.json.

    Benchmarks of earlier invocations into the same OUT stay listed with their data settings,
    so later resumes are still checked against them.
    """
    path = Path(args.out) / "run_config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items()
              if not k.startswith(("data_root_", "data_format_", "subset_"))}
    if path.exists():
        old = json.loads(path.read_text())["args"]
        config["benchmarks"] = list(dict.fromkeys(old.get("benchmarks", []) + args.benchmarks))
        for key in ("data_roots", "formats", "subsets"):
            config[key] = {**old.get(key, {}), **config[key]}
    fingerprint = checkpoint_fingerprint(args.model)
    text = json.dumps({"args": config, "git_commit": git_commit(), "checkpoint_fingerprint": fingerprint, **extra},
                      indent=2, default=str)
    atomic_write_text(path, text + "\n")


def build_context(args: argparse.Namespace, d: Dist) -> Context:
    from r1v.inputs import vision_token_ids
    from r1v.vision import VisionConfig

    model, processor = load_model(args.model, pick_device(d.local_rank), args.dtype, args.attn)
    decoding = DecodingConfig(**{k: getattr(args, k) for k in DecodingConfig.__dataclass_fields__})
    generator = Generator(model, processor, decoding, vision_token_ids(processor))
    vp = processor.video_processor
    vision = VisionConfig(fps=args.fps, min_frames=args.min_frames, max_frames=args.frames,
                          video_min_pixels=args.min_pixels, video_max_pixels=args.max_pixels,
                          image_max_pixels=args.image_max_pixels,
                          patch_factor=vp.patch_size * vp.merge_size)
    judge, endpoint = None, judge_endpoint(args)
    if endpoint is not None:
        from eval.judge import OpenAIJudge

        judge = OpenAIJudge(base_url=endpoint.base_url, model=endpoint.model, api_key=endpoint.api_key,
                            timeout_s=endpoint.timeout_s)
    return Context(args=args, generator=generator, vision=vision, judge=judge)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    """Run every requested benchmark; returns {name: summary} on rank 0 ({} elsewhere)."""
    args = resolve_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.restart:
        check_config(args)  # on every rank, before the model loads: fail fast, never half the ranks
    d = init_dist()
    if args.restart and d.rank == 0:
        discard_results(args)  # other ranks read OUT only after the barrier below
    ctx = build_context(args, d)
    if d.rank == 0:
        write_config(args, {"world_size": d.world, **ctx.generator.describe()})
    d.barrier()
    summaries = {}
    for name in args.benchmarks:
        summary = run_benchmark(ctx, name, d)
        if summary is not None:
            summaries[name] = summary
    if d.rank == 0:
        for name, s in summaries.items():
            print(f"{name:16s} {s['overall']:6.2f}  n={s['n']}  missing={s['n_missing']}")
    if d.world > 1:
        dist.destroy_process_group()
    return summaries


if __name__ == "__main__":
    main()
