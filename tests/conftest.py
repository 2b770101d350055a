"""Shared fixtures: one thread per process, a tiny checkpoint and synthetic data built once per session."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

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
