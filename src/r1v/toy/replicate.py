"""Entry point of the "Does it learn?" experiment:
``python -m r1v.toy.replicate --protocol experiments/toy/protocol_v1.yaml --out runs/toy_v1``.

1. builds (or reuses) the warm start of the protocol (``r1v.toy.warm_start``, cached under
   ``--cache`` by its settings hash);
2. starts the teacher service (annotation backend, loopback, a free port) for the FFR runs;
3. runs every (method, seed) of the protocol that has no ``summary.json`` yet, ``--jobs`` at a
   time, each in its own process (``python -m r1v.toy.runs``), with a progress bar; a killed
   replication resumes from the finished runs;
4. writes ``results.json`` (every number, per seed and method), ``results.md`` (start, final mean
   ± std, per seed, FFR's diagnostics) and ``results.png`` (held-out accuracy against step, and
   against generated training tokens: FFR generates more per step) (``r1v.toy.report``).
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests
from tqdm import tqdm

from r1v.toy.protocol import load_protocol
from r1v.toy.report import write_results
from r1v.toy.warm_start import build_warm_start

logger = logging.getLogger("r1v.toy.replicate")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def teacher_service(allowed_root: Path, log_path: Path, timeout_s: float = 60.0):
    """The annotation-backed teacher service on loopback; yields its URL, stops it on exit."""
    port = _free_port()
    cmd = [sys.executable, "-m", "ffr.teacher.service", "--backend", "annotation", "--host", "127.0.0.1",
           "--port", str(port), "--allowed-root", str(allowed_root), "--log-level", "warning"]
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"teacher service exited with {proc.returncode}; see {log_path}")
            try:
                if requests.get(url + "/ready", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"teacher service not ready after {timeout_s:.0f} s; see {log_path}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def pending_runs(protocol, out: Path) -> list[tuple[str, int]]:
    """(method, seed) pairs without a finished run, seed-major so that early results cover every method."""
    return [(m, s) for s in protocol.rl.seeds for m in protocol.rl.methods
            if not (out / m / f"seed{s}" / "summary.json").is_file()]


def run_all(protocol_path: Path, protocol, warm: Path, out: Path, todo, jobs: int, teacher_url: str | None) -> None:
    """Run ``todo`` with at most ``jobs`` processes at once; a failed run raises after the others end."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    queue, running, failed = list(todo), [], []
    with tqdm(total=len(todo), desc="toy runs", unit="run") as bar:
        while queue or running:
            while queue and len(running) < jobs:
                method, seed = queue.pop(0)
                run_dir = out / method / f"seed{seed}"
                run_dir.mkdir(parents=True, exist_ok=True)
                cmd = [sys.executable, "-m", "r1v.toy.runs", "--protocol", str(protocol_path), "--warm", str(warm),
                       "--method", method, "--seed", str(seed), "--out", str(run_dir)]
                if teacher_url:
                    cmd += ["--teacher-url", teacher_url]
                log = open(run_dir / "train.log", "w", encoding="utf-8")
                running.append((method, seed, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
            time.sleep(0.5)
            for item in list(running):
                method, seed, proc, log = item
                if proc.poll() is None:
                    continue
                log.close()
                running.remove(item)
                bar.update(1)
                if proc.returncode != 0:
                    failed.append(f"{method}/seed{seed} (exit {proc.returncode}, see {out / method / f'seed{seed}'}/train.log)")
                    queue.clear()
    if failed:
        raise RuntimeError("toy run(s) failed: " + "; ".join(failed))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Does it learn? GRPO vs FFR vs T-GRPO on the toy world.")
    p.add_argument("--protocol", required=True, help="Protocol YAML (experiments/toy/protocol_v*.yaml).")
    p.add_argument("--out", required=True, help="Output folder (runs, results.json/.md/.png).")
    p.add_argument("--cache", default=".cache/toy", help="Where warm starts are cached by their settings hash.")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="Override the protocol's seeds (e.g. more).")
    p.add_argument("--jobs", type=int, default=2, help="Runs at once (one thread each).")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    protocol = load_protocol(a.protocol)
    if a.seeds:
        from dataclasses import replace

        protocol = replace(protocol, rl=replace(protocol.rl, seeds=tuple(a.seeds)))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    warm = build_warm_start(protocol, a.cache)
    todo = pending_runs(protocol, out)
    logger.info("%d run(s) to do, %d finished", len(todo), len(protocol.rl.seeds) * len(protocol.rl.methods) - len(todo))
    if todo:
        needs_teacher = any(m == "ffr" for m, _ in todo)
        if needs_teacher:
            with teacher_service(warm / "data", out / "teacher.log") as url:
                run_all(Path(a.protocol), protocol, warm, out, todo, a.jobs, url)
        else:
            run_all(Path(a.protocol), protocol, warm, out, todo, a.jobs, None)
    paths = write_results(protocol, warm, out, wall_s=time.perf_counter() - start)
    print("\n".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
