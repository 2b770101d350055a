"""Connection hygiene of the teacher service under uvicorn: keep-alive, a connection bound, read timeouts.

uvicorn 0.54's h11 protocol has ``timeout_keep_alive`` (closes a connection left idle
*after* a response) and ``limit_concurrency`` (answers 503 once that many connections or
tasks exist), but no read timeout: a client that opens a connection and sends half a
request line or half its headers, or nothing at all, holds the connection for ever, and
enough of them exhaust ``limit_concurrency`` for everybody (slowloris). Two bounds close
that gap, both set by one ``read_timeout_s``:

- the request head (request line + headers) must arrive within ``read_timeout_s`` of its
  first byte, or of the connection being opened: :func:`head_timeout_protocol` closes the
  connection otherwise;
- the request body must arrive within ``read_timeout_s`` once the endpoint starts reading
  it: ``ffr.teacher.service._read_limited`` answers 408 and closes the connection.

:func:`server_settings` gives uvicorn all three settings; the service's ``main`` and
:func:`serve_in_thread` both use it, so tests exercise what production runs.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

DEFAULT_KEEP_ALIVE_S = 5.0
DEFAULT_MAX_CONNECTIONS = 512  # ranks x teacher_max_concurrency, with room to spare
DEFAULT_READ_TIMEOUT_S = 30.0
MAX_JSON_DEPTH = 32  # a request item nests 3 levels; anything far deeper is abuse or a bug


def head_timeout_protocol(read_timeout_s: float) -> type[H11Protocol]:
    """An h11 protocol class that closes a connection whose request head is not complete in time.

    The clock starts when the connection opens and again at the first byte of each later
    request on a kept-alive connection; it stops once h11 has parsed the request line and
    headers (the body has its own bound in the endpoint).
    """
    if read_timeout_s <= 0:
        raise ValueError(f"read_timeout_s must be > 0, got {read_timeout_s}")

    class HeadTimeoutH11Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._head_timer: asyncio.TimerHandle | None = None
            super().connection_made(transport)
            self._watch_head()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_head_timer()
            super().connection_lost(exc)

        def _watch_head(self) -> None:
            """Arm the timer while h11 still waits for a request head; disarm it otherwise."""
            waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
            if waiting and self._head_timer is None:
                self._head_timer = self.loop.call_later(read_timeout_s, self._head_timed_out)
            elif not waiting:
                self._stop_head_timer()

        def _stop_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                logger.info("closing connection from %s: no complete request head within %.3gs",
                            self.client, read_timeout_s)
                self.transport.close()

    return HeadTimeoutH11Protocol


def server_settings(app: FastAPI, keep_alive_s: float = DEFAULT_KEEP_ALIVE_S,
                    max_connections: int = DEFAULT_MAX_CONNECTIONS) -> dict:
    """uvicorn keyword arguments (``uvicorn.run`` / ``uvicorn.Config``) of the teacher service for `app`.

    keep_alive_s: an idle kept-alive connection is closed after this long.
    max_connections: requests beyond this many open connections (or running requests)
        get 503 instead of queueing without bound.
    The read timeout is the app's own (``app.state.read_timeout_s``, set by ``create_app``),
    so the head and body bounds always agree.
    """
    if keep_alive_s <= 0 or max_connections < 1:
        raise ValueError(f"need keep_alive_s > 0 and max_connections >= 1, got {keep_alive_s}, {max_connections}")
    # An app not built by create_app (a test double) gets the default bound.
    read_timeout_s = getattr(app.state, "read_timeout_s", DEFAULT_READ_TIMEOUT_S)
    return {"http": head_timeout_protocol(read_timeout_s), "timeout_keep_alive": keep_alive_s,
            "limit_concurrency": max_connections}


def server_config(app: FastAPI, host: str, port: int, *, log_level: str = "warning",
                  keep_alive_s: float = DEFAULT_KEEP_ALIVE_S, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                  **extra) -> uvicorn.Config:
    """``uvicorn.Config`` for `app` with :func:`server_settings`; `extra` goes to it unchanged."""
    return uvicorn.Config(app, host=host, port=port, log_level=log_level,
                          **server_settings(app, keep_alive_s, max_connections), **extra)


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = 10.0, *,
                    keep_alive_s: float = DEFAULT_KEEP_ALIVE_S,
                    max_connections: int = DEFAULT_MAX_CONNECTIONS) -> Iterator[str]:
    """Run `app` under uvicorn in a daemon thread; yields its base URL.

    Binds the socket before starting (``port=0`` picks a free port without a
    race), waits until uvicorn reports started, and stops it on exit. Used by
    tests and by the CPU demo to run the teacher in-process, with the same
    connection settings as the service's ``main`` (:func:`server_settings`).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    # log_config=None: an in-process server must not reconfigure the host process's logging
    # (uvicorn's dictConfig would close handlers the trainer or a test harness owns).
    config = server_config(app, host, bound_port, keep_alive_s=keep_alive_s, max_connections=max_connections,
                           timeout_graceful_shutdown=2, log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="teacher-uvicorn")
    thread.start()
    try:
        until = time.monotonic() + start_timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > until:
                raise RuntimeError(f"teacher service did not start on {host}:{bound_port}")
            time.sleep(0.01)
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=start_timeout_s)
        sock.close()


def json_too_deep(value: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """True iff a decoded JSON value nests lists / dicts more than `limit` levels deep.

    Iterative, so it cannot itself overflow the stack on the values it is meant to catch.
    """
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


if __name__ == "__main__":  # a library module: running it must not look like a service that started
    raise SystemExit("ffr.teacher.server is not an entry point; run: python -m ffr.teacher.service --help")
