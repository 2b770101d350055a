"""Waiting for a server a test started as a subprocess (teacher service, `transformers serve`)."""
from __future__ import annotations

import socket
import subprocess
import time

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(proc: subprocess.Popen, url: str, timeout_s: float, what: str = "server") -> None:
    """Poll ``GET url`` until it answers 2xx; RuntimeError if `proc` exits or `timeout_s` passes first."""
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
        time.sleep(0.2)
