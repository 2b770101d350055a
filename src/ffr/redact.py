"""One choke point for keeping configured secrets (API keys) out of details, logs and files.

Every process that holds a key registers it with `register_secret` as soon as it reads it
(the service's bearer key, the upstream teacher key, the judge key, the key of
``python -m ffr.mine`` and ``python -m r1v.teacher_traces``). From then on:

- `redact(text)` replaces every registered secret in `text` with ``[REDACTED]``; callers
  apply it to every string that leaves the process (an item's ``detail``, a JSONL line);
- `install_log_redaction()` (called by the first `register_secret`) installs a log-record
  factory, so every record created afterwards, by any logger (ours, uvicorn's, the SDK's),
  has its message, arguments and exception text redacted before any handler or formatter
  sees it. `RedactingFilter` does the same as a `logging.Filter`, for a handler that must be
  guarded on its own.

Why a process-wide registry rather than passing the keys around: an upstream may echo the
key in any error text (``Incorrect API key provided: Bearer sk-...``), and that text can reach
a detail, a warning and a file along many paths; one registry read at each exit covers them
all. Standard library only, so ``r1v`` may use it without depending on the rest of ``ffr``.
Keys shorter than `MIN_SECRET_LEN` characters are ignored (redacting a 2-letter "key" would
mangle every text), as are placeholders such as ``EMPTY``.
"""
from __future__ import annotations

import logging
import threading
import traceback
from typing import Optional

MASK = "[REDACTED]"
MIN_SECRET_LEN = 6
PLACEHOLDERS = frozenset({"EMPTY", "none", "None", "null"})

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()  # longest first, so a key that contains another is masked whole
_installed = False


def register_secret(secret: Optional[str]) -> None:
    """Remember `secret` for `redact`; None, placeholders and short strings are ignored."""
    global _secrets
    if not secret or secret in PLACEHOLDERS:
        return
    secret = secret.strip()
    if len(secret) < MIN_SECRET_LEN:
        return
    with _lock:
        if secret not in _secrets:
            _secrets = tuple(sorted({*_secrets, secret}, key=len, reverse=True))
    install_log_redaction()  # a registered secret is guarded in logs from the start, whoever logs


def registered() -> int:
    """How many secrets are registered (for tests and start-up logs; never the secrets)."""
    return len(_secrets)


def redact(text):
    """`text` with every registered secret replaced by ``[REDACTED]``; non-strings pass through."""
    if not isinstance(text, str) or not text:
        return text
    for secret in _secrets:  # a tuple snapshot: safe while another thread registers
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _redact_record(record: logging.LogRecord) -> None:
    """Bake the formatted, redacted message and exception text into `record`."""
    if not _secrets:
        return
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a malformed %-format: keep the raw template, redacted
        message = str(record.msg)
    record.msg, record.args = redact(message), None
    if record.exc_info and record.exc_info[0] is not None:
        # The formatter uses exc_text as is when it is set, so the traceback is redacted once here.
        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record it sees (and never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record)
        return True


def install_log_redaction() -> None:
    """Redact every log record created from now on in this process; idempotent."""
    global _installed
    with _lock:
        if _installed:
            return
        base = logging.getLogRecordFactory()

        def factory(*args, **kwargs) -> logging.LogRecord:
            record = base(*args, **kwargs)
            _redact_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True
