"""Launch a 2-process DeepSpeed ZeRO-3 CPU job (torchrun, gloo) with a hard wall-clock bound.

Shared by the GRPO and FFR ZeRO-3 tests. A job that outlives ``timeout_s`` has its whole
process group killed, so a deadlock shows up as ``timed_out=True`` instead of hanging CI.

A negative test (ranks made to diverge on purpose) passes ``settle_after=OUT/diverging``: the
job then gets `timeout_s` to reach the divergence (the worker writes that file) and `settle_s`
from then on to finish or fail, so how long start-up took on a loaded machine does not decide
whether a hang is told from a slow start.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SETTLE_S = 30.0  # after the divergence, the steps left take seconds (a few more on a loaded machine)


@dataclass
class LaunchResult:
    returncode: int | None
    timed_out: bool
    elapsed_s: float
    output: str


def launch_zero3(script: str, args: list[str], timeout_s: float, nproc: int = 2, *,
                 settle_after: Path | None = None, settle_s: float = SETTLE_S) -> LaunchResult:
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "LOCAL_SIZE": str(nproc),
           "TOKENIZERS_PARALLELISM": "false"}
    # --standalone: the launcher's own TCP store binds port 0 and the workers rendezvous through it
    # (torchrun shares that store), so no port is chosen here and bound there later: a port found
    # free by binding and closing a socket could be taken by another process before torchrun binds it.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--local-addr", "127.0.0.1",
           "--nproc_per_node", str(nproc), script, *args]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    limit, seen = start + timeout_s, False
    while True:
        if settle_after is not None and not seen and settle_after.exists():
            limit, seen = time.monotonic() + settle_s, True
        try:  # communicate() may be called again after a timeout without losing output
            step = timeout_s if settle_after is None else 0.5
            out, _ = proc.communicate(timeout=max(0.01, min(step, limit - time.monotonic())))
            return LaunchResult(proc.returncode, False, time.monotonic() - start, out)
        except subprocess.TimeoutExpired:
            if time.monotonic() >= limit:
                break
    kill_tree(proc.pid)
    out, _ = proc.communicate()
    return LaunchResult(None, True, time.monotonic() - start, out)


def kill_tree(pid: int) -> None:
    """SIGKILL a launcher and every descendant: torchrun starts its workers in their own sessions,
    so killing the launcher's process group alone would leave deadlocked ranks running."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True) + [root]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def assert_divergence_caught(res: LaunchResult, out_dir, settle_s: float = SETTLE_S) -> None:
    """The negative test of a coordination rule: the workers wrote ``out_dir/diverging`` when the
    ranks took different paths, and the job must then hang (killed at its timeout) or fail, never
    finish on both ranks. A timeout counts only if the job had `settle_s` after diverging to finish
    (the remaining steps take seconds), so a slow start is not mistaken for a caught hang; launched
    with ``settle_after`` the job always had that time."""
    marker = Path(out_dir) / "diverging"
    assert marker.exists(), f"run never reached the divergence:\n{res.output[-3000:]}"
    assert res.timed_out or res.returncode != 0
    assert not all((Path(out_dir) / f"rank{r}.json").exists() for r in (0, 1)), "uncoordinated generate went unnoticed"
    if res.timed_out:
        assert time.time() - marker.stat().st_mtime >= settle_s, "divergence reached too late to tell a hang"
