"""Entry point of the "Does it learn?" experiment:
``python -m r1v.toy.replicate --protocol experiments/toy/protocol_v1.yaml --out runs/toy_v1``.

1. builds (or reuses) the warm start of the protocol (``r1v.toy.warm_start``, cached under
   ``--cache`` by its settings hash), or, with ``--warm-student DIR``, starts from a saved warm
   student (e.g. the committed ``experiments/toy/v2/warm_student``): the 400-step warm start of v2,
   rebuilt later from identical data and seeds, ended at 50% instead of 35% (see the README), so
   every replication of a committed table starts from that table's own student;
2. starts what the protocol's methods reach outside their process: the teacher service
   (annotation backend, loopback, a free port) for FFR, the rule judge for the judge reward,
   and writes the oracle teacher traces for LUFFY (``r1v.toy.variants``);
3. runs every (method, seed) of the protocol that has no ``summary.json`` yet, ``--jobs`` at a
   time, each in its own process (``python -m r1v.toy.runs``), with a progress bar; a killed
   replication resumes from the finished runs;
4. writes ``results.json`` (every number, per seed and method), ``results.md`` (start, final mean
   ± std, per seed, FFR's diagnostics) and ``results.png`` (held-out accuracy against step, and
   against generated training tokens: FFR generates more per step) (``r1v.toy.report``).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tqdm import tqdm
from transformers import AutoModelForImageTextToText, AutoProcessor

from ffr.teacher.launch import START_TIMEOUT_S, wait_for_port_file, wait_until_up
from r1v.toy.heldout import HeldOut
from r1v.toy.protocol import METHODS, load_protocol
from r1v.toy.report import write_results
from r1v.toy.runs import Services
from r1v.toy.variants import serve_rule_judge, write_oracle_traces
from r1v.toy.warm_start import build_warm_start, read_jsonl, vision_config
from r1v.toy.world import generate_split

logger = logging.getLogger("r1v.toy.replicate")


@contextmanager
def teacher_service(allowed_root: Path, log_path: Path, timeout_s: float = START_TIMEOUT_S):
    """The annotation-backed teacher service on loopback; yields its URL, stops it on exit.

    The service binds a free port itself (``--port 0``) and writes it to a file once listening:
    a port chosen here and bound there could be taken by another process in between.
    `timeout_s` only bounds a hung start (an exit is reported at once); start-up takes seconds on
    a quiet machine and much longer on a loaded one.
    """
    port_file = log_path.with_name(log_path.name + ".port")
    port_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "ffr.teacher.service", "--backend", "annotation", "--host", "127.0.0.1",
           "--port", "0", "--port-file", str(port_file), "--allowed-root", str(allowed_root), "--log-level", "warning"]
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        port = wait_for_port_file(proc, port_file, timeout_s, what=f"teacher service (see {log_path})")
        url = f"http://127.0.0.1:{port}"
        wait_until_up(proc, url + "/ready", timeout_s, what=f"teacher service (see {log_path})")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def use_warm_student(protocol, student: Path, cache_root: str | Path) -> Path:
    """A warm-start folder (data splits + ``student/`` + ``warm_start.json``) around a saved student.

    Cached under ``cache_root/warm-given-<hash of the weights and the data settings>``; the splits
    are drawn as ``build_warm_start`` draws them, and the student is evaluated on the test split.
    """
    weights = hashlib.sha256((student / "model.safetensors").read_bytes()).hexdigest()
    data_key = json.dumps({"world": dataclasses.asdict(protocol.world), "splits": protocol.splits}, sort_keys=True)
    key = hashlib.sha256((weights + data_key).encode()).hexdigest()[:12]
    final = Path(cache_root) / f"warm-given-{key}"
    if (final / "warm_start.json").is_file():
        return final
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for name, (n, seed) in protocol.splits.items():
        if name != "pretrain":
            generate_split(tmp / "data", n, seed, protocol.world, name=name)
    shutil.copytree(student, tmp / "student")
    held = HeldOut(read_jsonl(tmp / "data" / "test.jsonl"), tmp / "data", vision_config(protocol))
    model = AutoModelForImageTextToText.from_pretrained(tmp / "student")
    summary = {"student_from": str(student), "student_sha256": weights, "protocol_version": protocol.version,
               "warm_student": held.evaluate(model, AutoProcessor.from_pretrained(tmp / "student"))}
    (tmp / "warm_start.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    tmp.rename(final)
    return final


def start_services(stack: ExitStack, methods: set[str], protocol, warm: Path, out: Path) -> Services:
    """What the methods need outside their run's process, kept alive by ``stack``."""
    services = Services()
    if "ffr" in methods:
        services.teacher_url = stack.enter_context(teacher_service(warm / "data", out / "teacher.log"))
    if "judge" in methods:
        services.judge_url = stack.enter_context(serve_rule_judge())
    if "luffy" in methods:
        traces = write_oracle_traces(warm / "data" / "rl.jsonl", out / "luffy_traces.jsonl", protocol.warm_start.think)
        services.luffy_traces = str(traces)
    return services


def with_overrides(protocol, seeds=None, methods=None):
    """The protocol with ``--seeds`` / ``--methods`` applied; a method the protocol lacks is a ValueError
    (its settings were not fixed for it)."""
    rl = protocol.rl
    if methods:
        missing = sorted(set(methods) - set(rl.methods))
        if missing:
            raise ValueError(f"--methods: {missing} not in the protocol's methods {list(rl.methods)}")
        rl = dataclasses.replace(rl, methods=tuple(m for m in rl.methods if m in methods))
    if seeds:
        rl = dataclasses.replace(rl, seeds=tuple(seeds))
    return dataclasses.replace(protocol, rl=rl)


def pending_runs(protocol, out: Path) -> list[tuple[str, int]]:
    """(method, seed) pairs without a finished run, seed-major so that early results cover every method."""
    return [(m, s) for s in protocol.rl.seeds for m in protocol.rl.methods
            if not (out / m / f"seed{s}" / "summary.json").is_file()]


def run_all(protocol_path: Path, warm: Path, out: Path, todo, jobs: int, services: Services) -> None:
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
                for flag, value in (("--teacher-url", services.teacher_url), ("--judge-url", services.judge_url),
                                    ("--luffy-traces", services.luffy_traces)):
                    if value:
                        cmd += [flag, value]
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
    p = argparse.ArgumentParser(description="Does it learn? GRPO vs FFR vs T-GRPO (and the Fig. 5 baselines) on the toy world.")
    p.add_argument("--protocol", required=True, help="Protocol YAML (experiments/toy/protocol_v*.yaml).")
    p.add_argument("--out", required=True, help="Output folder (runs, results.json/.md/.png).")
    p.add_argument("--cache", default=".cache/toy", help="Where warm starts are cached by their settings hash.")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="Override the protocol's seeds (e.g. more).")
    p.add_argument("--methods", nargs="+", default=None, choices=METHODS,
                   help="Run (and report) only these of the protocol's methods, e.g. more seeds of two of them.")
    p.add_argument("--jobs", type=int, default=2, help="Runs at once (one thread each).")
    p.add_argument("--warm-student", default=None,
                   help="Start every run from this saved warm student (a checkpoint folder) instead of building "
                        "the protocol's warm start (see the module docstring).")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        protocol = load_protocol(a.protocol)
    except (OSError, ValueError) as exc:
        p.error(f"--protocol: {exc}")
    try:
        protocol = with_overrides(protocol, a.seeds, a.methods)
    except ValueError as exc:
        p.error(str(exc))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    warm = use_warm_student(protocol, Path(a.warm_student), a.cache) if a.warm_student else \
        build_warm_start(protocol, a.cache)
    todo = pending_runs(protocol, out)
    logger.info("%d run(s) to do, %d finished", len(todo), len(protocol.rl.seeds) * len(protocol.rl.methods) - len(todo))
    if todo:
        with ExitStack() as stack:
            services = start_services(stack, {m for m, _ in todo}, protocol, warm, out)
            run_all(Path(a.protocol), warm, out, todo, a.jobs, services)
    paths = write_results(protocol, warm, out, wall_s=time.perf_counter() - start)
    print("\n".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
