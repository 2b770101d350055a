"""Waiting for a server started as a subprocess (the teacher service, `transformers serve`).

The teacher service started with ``--port 0 --port-file PATH`` binds a free port itself and
writes it atomically once listening (a port picked by the launcher and bound later by the
subprocess could be taken in between): :func:`wait_for_port_file` reads it, then
:func:`wait_until_up` polls a readiness URL. Both report an exited server at once; `timeout_s`
only stops a hung start, so it is set for a loaded machine (a quiet one starts in 3-15 s).
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import requests

START_TIMEOUT_S = 180.0


def wait_for_port_file(proc: subprocess.Popen, path: Path, timeout_s: float = START_TIMEOUT_S,
                       what: str = "server") -> int:
    """The port a server started with ``--port 0 --port-file path`` bound; RuntimeError if `proc`
    exits or `timeout_s` passes before it writes the file."""
    path = Path(path)
    until = time.monotonic() + timeout_s
    while True:
        if path.is_file():
            return int(path.read_text())
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before writing {path}")
        if time.monotonic() > until:
            raise RuntimeError(f"{what} did not write {path} within {timeout_s:.0f}s")
        time.sleep(0.05)  # polling a condition, not waiting a fixed time


def wait_until_up(proc: subprocess.Popen, url: str, timeout_s: float = START_TIMEOUT_S,
                  what: str = "server") -> None:
    """Poll ``GET url`` until it answers 2xx; RuntimeError if `proc` exits or `timeout_s` passes first.
    A refused connection or a read timeout (a loaded machine) is "not up yet"."""
    until = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before answering {url}")
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > until:
            raise RuntimeError(f"{what} did not answer {url} within {timeout_s:.0f}s")
        time.sleep(0.2)  # polling a condition, not waiting a fixed time
