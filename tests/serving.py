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
from collections.abc import Iterator

# The waits live in the package (the toy replication uses them too); re-exported for the tests.
from ffr.teacher.launch import START_TIMEOUT_S, wait_for_port_file, wait_until_up  # noqa: F401

ADDRESS_IN_USE = "address already in use"


def free_port() -> int:
    """A port that was free a moment ago (racy: see the module docstring)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port on which a connection is refused, for as long as the block runs.

    The port stays bound (never listening) meanwhile, so no other process can start listening on it;
    a port bound and closed at once could be taken, and then the connection would be accepted.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]
