"""Waiting for a server a test started as a subprocess (teacher service, `transformers serve`).

Ports: a port found free by binding to 0 and closing the socket can be taken by anything else
before the subprocess binds it (another test's server, an outgoing connection's ephemeral port).
So the teacher service binds port 0 itself and reports the port it got (``--port 0 --port-file``,
:func:`wait_for_port_file`); a server that cannot do that is started with :func:`free_port` and
started again on another port only when it exits because that port was taken (EADDRINUSE), which
is a start-up condition, not a test failure being hidden.

Start-up bounds (`timeout_s`) only stop a hung start from hanging CI: a server that exits is
reported at once, so the bound is set for a loaded 2-core machine, not for a quiet one.
"""
from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import requests

# Seconds a subprocess server may take to import and bind on a loaded 2-core CI machine (a quiet
# one takes 3-15 s; 20 s was exceeded under `stress-ng --cpu 4`).
START_TIMEOUT_S = 180.0
ADDRESS_IN_USE = "address already in use"


def free_port() -> int:
    """A port that was free a moment ago (racy: see the module docstring)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port_file(proc: subprocess.Popen, path: Path, timeout_s: float = START_TIMEOUT_S,
                       what: str = "server") -> int:
    """The port a server started with ``--port 0 --port-file path`` bound; RuntimeError if `proc`
    exits or `timeout_s` passes before it writes the file (written atomically, once listening)."""
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
        time.sleep(0.2)  # polling a condition, not waiting a fixed time


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port on which a connection is refused, for as long as the block runs.

    The port stays bound (never listening) meanwhile, so no other process can start listening on it;
    a port bound and closed at once could be taken, and then the connection would be accepted.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]
