"""eval.run / eval.generation / eval/run_all.sh on the tiny checkpoint and the eight fixtures.

One real run of ``eval/run_all.sh`` (all eight benchmarks, then the report) is shared by the
end-to-end and resume tests; the resume test SIGKILLs a real subprocess part-way.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eval import predictions as epred
from eval import registry
from eval import run as erun
from eval.benchmarks.base import LoadError
from eval.generation import DecodingConfig, Generator, load_model
from r1v.answers import extract_answer
from r1v.vision import VisionConfig
from transformers import AutoProcessor

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--max-new-tokens", "8", "--frames", "4", "--batch-size", "2", "--log-level", "WARNING"]
# A run killed part-way, at a known point: batches 1-3 (6 rows) are generated and written, then the
# 4th batch's generate never returns, so the run is alive with exactly 6 rows whenever the test kills
# it. (It used to sleep 0.4 s per batch and be killed once 6 rows showed up: a test starved of CPU
# for a few seconds on a loaded machine could find the run finished, or every row written.)
SLOW_RUN = """
import sys, threading
import eval.generation as g
generate = g.Generator.generate
calls = []
def held(self, inputs, seed):
    calls.append(len(inputs["input_ids"]))
    if len(calls) > 3:
        threading.Event().wait()  # blocks until the test's SIGKILL
    return generate(self, inputs, seed)
g.Generator.generate = held
from eval.run import main
main(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from eval.fixtures import write_fixtures

    root = tmp_path_factory.mktemp("fixtures")
    write_fixtures(str(root))
    return root


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_qwen25_ckpt, data_root):
    """OUT of ``eval/run_all.sh`` on all eight fixtures (uninterrupted, one process)."""
    out = tmp_path_factory.mktemp("full") / "out"
    env = {**os.environ, "MODEL_PATH": tiny_qwen25_ckpt, "OUT_DIR": str(out), "EVAL_DATA_DIR": str(data_root),
           "PYTHON": sys.executable, "NPROC": "1", "BATCH_SIZE": "2"}
    proc = subprocess.run(["bash", str(REPO / "eval" / "run_all.sh"), *SMALL], env=env,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def cli(ckpt, out, root, names, *extra):
    flags = [f for n in names for f in (f"--data-root-{n}", str(root / n))]
    return ["--model", ckpt, "--out", str(out), "--benchmarks", ",".join(names), *flags, *SMALL, *extra]


def rows_of(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


# ------------------------------------------------------------------ end to end
def test_run_all_evaluates_all_eight_and_reports(full_run, data_root):
    # run_all.sh defaults to the paper's subsets: MMVU multiple-choice, TempCompass multi-choice.
    subsets = {"mmvu": "multiple-choice", "tempcompass": "multi-choice"}
    for name, module in registry.BENCHMARKS.items():
        samples = module.load(str(data_root / name), subset=subsets.get(name))
        assert samples, name
        summary = json.loads((full_run / name / "summary.json").read_text())
        rows = rows_of(full_run / name / "predictions.jsonl")
        assert [r["id"] for r in rows] == [s.id for s in samples], name  # all, once, in order
        assert summary["n_expected"] == len(samples) and summary["n_missing"] == 0
        assert summary["n"] + summary["n_unjudged"] == len(samples)
        for sample, row in zip(samples, rows):
            assert row["prompt"] == module.build_prompt(sample)
            assert row["parsed"] == extract_answer(row["output"])
            assert row["score"] == module.score(row["output"], sample)
            assert row["n_frames"] == 4  # --frames 4 caps the 2 s fixture clips (8 frames at 4 fps)
        assert summary["overall"] == module.aggregate(rows)["overall"]
    config = json.loads((full_run / "run_config.json").read_text())
    assert config["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", config["git_commit"])
    assert config["args"]["frames"] == 4 and config["args"]["seed"] == 42
    # the tiny checkpoint ships Qwen's repetition_penalty=1.05 / top_k=1: they must not be used
    assert config["generation_config"]["repetition_penalty"] == 1.0
    assert config["generation_config"]["top_k"] == 0 and config["generation_config"]["top_p"] == 0.001
    assert config["checkpoint_generation_config_ignored"]["repetition_penalty"] == 1.05
    table = (full_run / "report" / "table2.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| tiny-qwen2_5_vl |"))
    cells = row.strip("| ").split(" | ")[1:]
    overall = {n: json.loads((full_run / n / "summary.json").read_text())["overall"] for n in registry.BENCHMARKS}
    assert cells[:8] == [f"{overall[n]:.1f}" for n in registry.BENCHMARKS]
    assert cells[8] == f"{sum(overall.values()) / 8:.1f}"
    assert (full_run / "report" / "categories.csv").read_text().count("\n") > 8


def test_resume_after_sigkill_equals_uninterrupted_run(full_run, tiny_qwen25_ckpt, data_root, tmp_path,
                                                       monkeypatch):
    out = tmp_path / "out"
    argv = cli(tiny_qwen25_ckpt, out, data_root, ["mvbench"])
    preds = out / "mvbench" / "predictions.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN, *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not (preds.exists() and preds.read_text().count("\n") >= 6) and time.monotonic() < deadline:
        assert proc.poll() is None, "run ended before it could be killed"
        time.sleep(0.05)
    assert proc.poll() is None, "no predictions before the deadline"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = rows_of(preds)
    assert len(before) == 6
    with open(preds, "ab") as fh:  # a write torn by the kill: half a line, no newline
        fh.write(b'{"id": "action_sequence_9", "output": "<answ')

    generated = []
    generate = Generator.generate

    def counting(self, inputs, seed):
        generated.append(inputs["input_ids"].shape[0])
        return generate(self, inputs, seed)

    monkeypatch.setattr(Generator, "generate", counting)
    summary = erun.main(argv)["mvbench"]
    assert sum(generated) == 20 - len(before)  # only the missing ones were generated
    resumed = rows_of(preds)
    ids = [r["id"] for r in resumed]
    assert len(ids) == len(set(ids)) == 20
    assert resumed[: len(before)] == before
    assert resumed == rows_of(full_run / "mvbench" / "predictions.jsonl")
    assert summary == json.loads((full_run / "mvbench" / "summary.json").read_text())


# ------------------------------------------------------------------ oracle answers, sharding
class Oracle:
    """Stands in for Generator: answers each sample in ``order`` with its gold answer."""

    def __init__(self, processor, order):
        self.processor, self.queue = processor, list(order)

    def generate(self, inputs, seed):
        batch, self.queue = self.queue[: len(inputs["input_ids"])], self.queue[len(inputs["input_ids"]):]
        return [f"<think>checked</think><answer>{s.answer}</answer>" for s in batch]


def oracle_run(ckpt, root, out, names, world):
    args = erun.resolve_args(cli(ckpt, out, root, names))
    processor = AutoProcessor.from_pretrained(ckpt)
    ctx = erun.Context(args=args, generator=None, vision=VisionConfig(max_frames=4))
    summaries = {}
    for name in names:
        bench_dir = out / name
        bench_dir.mkdir(parents=True)
        samples = erun.load_samples(args, name)
        pending = erun.pending_samples(samples, bench_dir)
        for rank in range(world):
            ctx.generator = Oracle(processor, epred.shard(pending, rank, world))
            assert erun.generate_shard(ctx, name, pending, bench_dir, rank, world) == []
        if world > 1:
            assert sorted(p.name for p in bench_dir.iterdir()) == [
                f"predictions.rank{r}.jsonl" for r in range(world)]
        summaries[name] = erun.finalize(ctx, name, samples, bench_dir, [])
        assert [r["id"] for r in rows_of(bench_dir / "predictions.jsonl")] == [s.id for s in samples]
        assert sorted(p.name for p in bench_dir.iterdir()) == ["predictions.jsonl", "summary.json"]
    return summaries


def test_gold_answers_score_100_on_every_benchmark(tiny_qwen25_ckpt, data_root, tmp_path):
    summaries = oracle_run(tiny_qwen25_ckpt, data_root, tmp_path / "w1", list(registry.BENCHMARKS), 1)
    for name, summary in summaries.items():
        assert summary["overall"] == pytest.approx(100.0), name
        assert summary["n"] > 0
    # TempCompass captioning is judged only by an LLM: unjudged without one, never guessed
    assert summaries["tempcompass"]["n_unjudged"] == 1


def test_two_rank_shards_merge_to_the_single_rank_result(tiny_qwen25_ckpt, data_root, tmp_path):
    names = ["mvbench", "vsibench"]
    one = oracle_run(tiny_qwen25_ckpt, data_root, tmp_path / "w1", names, 1)
    two = oracle_run(tiny_qwen25_ckpt, data_root, tmp_path / "w2", names, 2)
    assert one == two
    assert epred.shard(list(range(5)), 1, 2) == [1, 3]
    with pytest.raises(ValueError, match="rank 2 outside world of size 2"):
        epred.shard([1], 2, 2)


# ------------------------------------------------------------------ missing and unreadable media
def test_missing_and_unreadable_videos_are_counted_by_id(tiny_qwen25_ckpt, tmp_path):
    from eval.fixtures import write_fixtures

    root = tmp_path / "data"
    write_fixtures(str(root), ["mmvu"])
    samples = registry.get_benchmark("mmvu").load(str(root / "mmvu"))
    gone, broken = samples[0], samples[1]
    assert gone.media_path != broken.media_path
    os.remove(gone.media_path)
    Path(broken.media_path).write_bytes(b"not a video")
    argv = cli(tiny_qwen25_ckpt, tmp_path / "out", root, ["mmvu"])
    summary = erun.main(argv)["mmvu"]
    assert summary["n_missing"] == 2 and summary["n"] == len(samples) - 2
    reasons = {m["id"]: m["reason"] for m in summary["missing"]}
    assert reasons[gone.id] == "missing video file"
    assert reasons[broken.id].startswith(f"unreadable video {broken.media_path}")
    ids = [r["id"] for r in rows_of(tmp_path / "out" / "mmvu" / "predictions.jsonl")]
    assert ids == [s.id for s in samples[2:]]
    with pytest.raises(LoadError, match=re.escape(gone.id)):
        erun.main(argv + ["--strict"])
    Path(gone.media_path).write_bytes(Path(samples[2].media_path).read_bytes())  # only the broken one left
    with pytest.raises(RuntimeError, match=f"mmvu item {re.escape(broken.id)}: unreadable"):
        erun.main(argv + ["--strict"])


# ------------------------------------------------------------------ prediction files
def test_torn_last_line_is_dropped_and_corrupt_lines_named(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b"}\n{"id": "c", "out')
    assert [r["id"] for r in epred.read_rows(path)] == ["a", "b"]
    writer = epred.PredictionWriter(path)  # cuts the torn tail before appending
    writer.write([{"id": "c"}, {"id": "d"}])
    writer.close()
    assert path.read_bytes() == b'{"id": "a"}\n{"id": "b"}\n{"id": "c"}\n{"id": "d"}\n'
    path.write_bytes(b'{"id": "a"}\n{"id": \n{"id": "c"}\n')
    with pytest.raises(ValueError, match=r"predictions.jsonl:2: corrupt predictions line"):
        epred.read_rows(path)


def test_merge_orders_rows_dedups_and_keeps_foreign_ids(tmp_path):
    (tmp_path / "predictions.jsonl").write_text('{"id": "x", "v": 0}\n{"id": "b", "v": 1}\n')
    (tmp_path / "predictions.rank0.jsonl").write_text('{"id": "c", "v": 2}\n{"id": "b", "v": 9}\n')
    (tmp_path / "predictions.rank1.jsonl").write_text('{"id": "a", "v": 3}\n')
    rows = epred.merge_predictions(tmp_path, ["a", "b", "c", "d"])
    assert rows == [{"id": "a", "v": 3}, {"id": "b", "v": 1}, {"id": "c", "v": 2}]
    assert rows_of(tmp_path / "predictions.jsonl") == rows + [{"id": "x", "v": 0}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.jsonl"]


def test_resume_with_other_settings_is_refused(tmp_path):
    argv = ["--model", "m", "--out", str(tmp_path), "--benchmarks", "mmvu", "--data-root-mmvu", "d"]
    args = erun.resolve_args(argv)
    erun.write_config(args, {})
    erun.check_config(erun.resolve_args(argv + ["--batch-size", "3", "--max-samples", "2"]))  # allowed
    with pytest.raises(SystemExit, match=r"different settings \(frames, seed, formats\[mmvu\]\)"):
        erun.check_config(erun.resolve_args(argv + ["--frames", "32", "--seed", "1",
                                                    "--data-format-mmvu", "video-r1"]))
    with pytest.raises(SystemExit, match="missing --data-root-<name> for: vsibench"):
        erun.resolve_args(argv[:4] + ["--benchmarks", "mmvu,vsibench", "--data-root-mmvu", "d"])


# ------------------------------------------------------------------ decoding settings
def test_decoding_is_explicit_and_ignores_the_checkpoint_defaults(tiny_qwen25_ckpt):
    from r1v.inputs import vision_token_ids

    model, processor = load_model(tiny_qwen25_ckpt, erun.pick_device())
    assert model.generation_config.repetition_penalty == 1.05  # Qwen's shipped default
    gen = Generator(model, processor, DecodingConfig(), vision_token_ids(processor))
    effective, _ = model._prepare_generation_config(gen.config)
    assert (effective.do_sample, effective.temperature, effective.top_p) == (True, 0.1, 0.001)
    assert (effective.top_k, effective.repetition_penalty, effective.max_new_tokens) == (0, 1.0, 1024)
    assert effective.suppress_tokens == vision_token_ids(processor)
    greedy = DecodingConfig(temperature=0.0).generation_config(model.generation_config, [])
    assert greedy.do_sample is False and greedy.suppress_tokens is None
    with pytest.raises(ValueError, match="invalid decoding settings"):
        DecodingConfig(top_p=0.0)
