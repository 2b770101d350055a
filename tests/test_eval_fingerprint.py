"""eval.run refuses to resume onto rows made from other inputs: another data root, a changed
checkpoint at the same path, an edited record or a replaced video; ``--restart`` starts over."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from transformers import AutoProcessor

from eval import run as erun
from eval.fingerprint import checkpoint_changes, checkpoint_fingerprint
from r1v.vision import VisionConfig

SMALL = ["--max-new-tokens", "4", "--frames", "4", "--batch-size", "2", "--log-level", "WARNING"]


@pytest.fixture
def data_root(tmp_path):
    from eval.fixtures import write_fixtures

    root = tmp_path / "data"
    write_fixtures(str(root), ["mmvu"])
    return root


@pytest.fixture
def ckpt(tiny_qwen25_ckpt, tmp_path):
    """A private copy of the tiny checkpoint: these tests rewrite its files."""
    return str(shutil.copytree(tiny_qwen25_ckpt, tmp_path / "ckpt"))


def argv_for(ckpt, out, root, *extra):
    return ["--model", str(ckpt), "--out", str(out), "--benchmarks", "mmvu", "--data-root-mmvu", str(root / "mmvu"),
            *SMALL, *extra]


def bump_mtime(path) -> None:
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_changed_checkpoint_or_data_root_is_refused(ckpt, data_root, tmp_path):
    out = tmp_path / "out"
    argv = argv_for(ckpt, out, data_root)
    erun.write_config(erun.resolve_args(argv), {})
    erun.check_config(erun.resolve_args(argv))  # same inputs: resumes
    other = tmp_path / "copy"
    shutil.copytree(data_root, other)
    with pytest.raises(SystemExit, match=r"different settings \(data_roots\[mmvu\]\).*--restart"):
        erun.check_config(erun.resolve_args(argv_for(ckpt, out, other)))
    bump_mtime(Path(ckpt) / "model.safetensors")  # weights rewritten in place, same path
    with pytest.raises(SystemExit, match=r"checkpoint .* changed .*model.safetensors size/mtime changed"):
        erun.check_config(erun.resolve_args(argv))
    erun.write_config(erun.resolve_args(argv), {})
    config = json.loads((Path(ckpt) / "config.json").read_text())
    (Path(ckpt) / "config.json").write_text(json.dumps({**config, "note": "edited"}))
    with pytest.raises(SystemExit, match=r"config.json contents changed"):
        erun.check_config(erun.resolve_args(argv))


def test_checkpoint_fingerprint_contents(ckpt):
    fp = checkpoint_fingerprint(ckpt)
    assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= set(fp)
    assert len(fp["config.json"]) == 64 and fp["model.safetensors"][0] == os.path.getsize(f"{ckpt}/model.safetensors")
    assert checkpoint_changes(fp, fp) == []
    assert checkpoint_changes(fp, {**fp, "extra.bin": [1, 2]}) == ["extra.bin added"]
    assert checkpoint_changes(None, fp) == ["no checkpoint fingerprint recorded (written by an older eval.run)"]
    assert checkpoint_fingerprint(str(Path(ckpt) / "absent")) == {}


class Oracle:
    """Stands in for the Generator: answers each batch with option A."""

    def __init__(self, processor):
        self.processor = processor

    def generate(self, inputs, seed):
        return ["<answer>A</answer>"] * len(inputs["input_ids"])


def oracle_rows(ckpt, root, out):
    """Write rows for every mmvu sample through generate_shard; returns (args, samples, bench_dir)."""
    args = erun.resolve_args(argv_for(ckpt, out, root))
    ctx = erun.Context(args=args, generator=Oracle(AutoProcessor.from_pretrained(ckpt)),
                       vision=VisionConfig(max_frames=4))
    bench_dir = out / "mmvu"
    bench_dir.mkdir(parents=True)
    samples = erun.load_samples(args, "mmvu")
    assert erun.generate_shard(ctx, "mmvu", erun.pending_samples(samples, bench_dir), bench_dir, 0, 1) == []
    return args, samples, bench_dir


def test_rows_made_from_changed_records_or_videos_are_refused(ckpt, data_root, tmp_path):
    args, samples, bench_dir = oracle_rows(ckpt, data_root, tmp_path / "out")
    assert erun.pending_samples(samples, bench_dir) == []  # unchanged inputs: every row is reused
    assert erun.pending_samples(erun.load_samples(args, "mmvu"), bench_dir) == []
    video = samples[1].media_path
    bump_mtime(video)
    with pytest.raises(SystemExit, match=rf"1 prediction row\(s\) .*{samples[1].id}: media file {video} changed"):
        erun.pending_samples(erun.load_samples(args, "mmvu"), bench_dir)
    edited = erun.load_samples(args, "mmvu")
    edited[0].question += " (revised)"
    with pytest.raises(SystemExit, match=rf"2 prediction row\(s\) .*{samples[0].id}: benchmark record changed"):
        erun.pending_samples(edited, bench_dir)
    rows = [json.loads(x) for x in (bench_dir / "predictions.jsonl").read_text().splitlines()]
    (bench_dir / "predictions.jsonl").write_text("".join(
        json.dumps({k: v for k, v in r.items() if k != "inputs"}) + "\n" for r in rows))
    with pytest.raises(SystemExit, match="no input fingerprint"):
        erun.pending_samples(samples, bench_dir)


def test_restart_discards_results_and_resume_refuses_a_touched_checkpoint(ckpt, data_root, tmp_path):
    out = tmp_path / "out"
    argv = argv_for(ckpt, out, data_root, "--max-samples", "2")
    first = erun.main(argv)["mmvu"]
    assert first["n"] + first["n_unjudged"] == 2
    assert erun.main(argv)["mmvu"] == first  # same inputs: resumed, nothing new
    bump_mtime(Path(ckpt) / "model.safetensors")
    with pytest.raises(SystemExit, match="model.safetensors size/mtime changed"):
        erun.main(argv)
    (out / "mmvu" / "stray.txt").write_text("kept")
    again = erun.main(argv + ["--restart"])["mmvu"]
    assert again["n"] + again["n_unjudged"] == 2 and (out / "mmvu" / "stray.txt").exists()
    written = json.loads((out / "run_config.json").read_text())
    assert written["checkpoint_fingerprint"] == checkpoint_fingerprint(ckpt)
    erun.check_config(erun.resolve_args(argv))  # the restarted OUT resumes again
