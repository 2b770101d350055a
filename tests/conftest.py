"""Shared fixtures: one thread per process; a tiny checkpoint, synthetic data and a server of the
checkpoint (`transformers serve`) built once per session."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

from serving import ADDRESS_IN_USE, START_TIMEOUT_S, free_port, wait_until_up

torch.set_num_threads(1)


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped without one)")
    config.addinivalue_line("markers", "slow: multi-process or multi-step runs")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_qwen25_ckpt(tmp_path_factory):
    """A random-weight Qwen2.5-VL checkpoint folder, loaded by path like a real one."""
    from r1v.toy.tiny import build_tiny_checkpoint

    return str(build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-qwen2_5_vl", arch="qwen2_5_vl", seed=0))


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    """A small synthetic video-QA set (videos, images, train.jsonl with evidence)."""
    from r1v.toy.synthetic import generate_dataset

    out = tmp_path_factory.mktemp("synth")
    generate_dataset(out, n_items=24, seed=0)
    return out


@pytest.fixture(scope="session")
def served_model(tiny_qwen25_ckpt, tmp_path_factory):
    """`transformers serve` of the tiny checkpoint on a free loopback port; yields (base_url, model id).

    A real OpenAI-compatible server (image parts as data URLs, `usage` in replies) on the CPU,
    started once per session: the teacher and the judge tests against a real server share it.
    It idles (no CPU) until the session ends.
    """
    cli = Path(sys.executable).with_name("transformers")
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    # `transformers serve` cannot report a port it picked, so it gets one that was free a moment ago;
    # only if something took that port before it bound it (EADDRINUSE) is it started again elsewhere.
    for attempt in range(3):
        port = free_port()
        with open(log, "w") as out:
            proc = subprocess.Popen([str(cli), "serve", tiny_qwen25_ckpt, "--host", "127.0.0.1", "--port", str(port)],
                                    stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}/v1"
        try:
            wait_until_up(proc, f"{base}/models", START_TIMEOUT_S, "transformers serve")
            break
        except RuntimeError as exc:
            text = log.read_text()
            if proc.poll() is not None and ADDRESS_IN_USE in text.lower() and attempt < 2:
                continue
            proc.kill()
            proc.wait()
            raise RuntimeError(f"{exc}: {text[-2000:]}") from exc
    try:
        yield base, tiny_qwen25_ckpt
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
