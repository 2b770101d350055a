"""``run_config.json`` of every training entry point, and the one rule for secret fields.

:func:`write_run_config` writes every resolved field of a run's config dataclasses, the
argv and the git commit to ``output_dir/run_config.json``. Secrets never reach that file:
a field is secret when :func:`is_secret_field` says so (the names in ``SECRET_FIELDS`` plus
any field named like a token, key, secret or password), and its value is written as ``***``
both among the fields and in argv (:func:`redact_argv`, every flag spelling).
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

REDACTED = "***"


def git_commit(repo_dir: Optional[str] = None) -> Optional[str]:
    """HEAD commit of the code's checkout (None outside a git checkout); '+dirty' marks local edits."""
    repo_dir = repo_dir or str(Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo_dir,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


# The one list of secret fields of every entry point (r1v.grpo, r1v.tgrpo, r1v.sft, ffr.train):
# their values never reach run_config.json (fields and argv), the argv given to trackers or
# ffr_config_dict. Besides these names, any field named like a secret is one (see is_secret_field),
# so a secret field added later is covered without editing this list.
SECRET_FIELDS = ("hub_token", "teacher_api_key")
# Words of a field name (split at "_") that mark a secret: hub_token, teacher_api_key, judge_secret...
_SECRET_WORDS = frozenset({"token", "key", "secret", "password", "apikey", "credential", "credentials"})
# Last words of fields that say where a secret is kept (a file name), not the secret itself.
_LOCATION_WORDS = frozenset({"file", "path", "dir", "env"})


def is_secret_field(name: str) -> bool:
    """True for a field (or a ``--flag``, any spelling) whose value is a secret.

    A name in SECRET_FIELDS, or one with a word "token", "key", "secret", "password" (...) that does
    not end in "file" / "path" / "dir" / "env" (``teacher_api_key_file`` names a file; its path is
    kept readable). Plural words ("max_tokens") are counts, not secrets.
    """
    name = name.lstrip("-").split("=", 1)[0].replace("-", "_").lower()
    if name in SECRET_FIELDS:
        return True
    words = name.split("_")
    return words[-1] not in _LOCATION_WORDS and not _SECRET_WORDS.isdisjoint(words)


def secret_field_names(configs: tuple) -> tuple[str, ...]:
    """The fields of ``configs`` whose values are secrets (:func:`is_secret_field`, plus any class's
    own ``SECRET_FIELDS``)."""
    names: list[str] = []
    for cfg in configs:
        extra = getattr(type(cfg), "SECRET_FIELDS", ())
        names += [f.name for f in dataclasses.fields(cfg)
                  if (is_secret_field(f.name) or f.name in extra) and f.name not in names]
    return tuple(names)


def redact_argv(argv: list[str], secret_fields: tuple[str, ...] = ()) -> list[str]:
    """Copy of ``argv`` with the value of every secret flag replaced by ``***``.

    Secret flags are those of :func:`is_secret_field` plus ``secret_fields``. Every spelling the
    parser accepts is covered: ``--name VALUE``, ``--name=VALUE`` and the dash forms
    ``--na-me VALUE`` / ``--na-me=VALUE``.
    """
    extra = {n.replace("-", "_") for n in secret_fields}

    def secret(flag: str) -> bool:
        return flag.startswith("--") and (is_secret_field(flag) or flag[2:].replace("-", "_") in extra)

    out: list[str] = []
    hide_next = False
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if hide_next:
            out.append(REDACTED)
            hide_next = False
        elif "=" not in arg and secret(arg):
            out.append(arg)
            hide_next = True
        elif "=" in arg and secret(flag):
            out.append(f"{flag}={REDACTED}")
        else:
            out.append(arg)
    return out


def write_run_config(output_dir: str, configs: tuple) -> Path:
    """Write every resolved field, argv and the git commit to ``output_dir/run_config.json``.

    Secret fields (:func:`secret_field_names`) are written as ``***``, in the fields and in argv.
    """
    secrets = secret_field_names(configs)
    resolved: dict[str, Any] = {"git_commit": git_commit(), "argv": redact_argv(sys.argv, secrets)}
    for cfg in configs:
        resolved[type(cfg).__name__] = {
            f.name: REDACTED if f.name in secrets and getattr(cfg, f.name) is not None
            else _jsonable(getattr(cfg, f.name))
            for f in dataclasses.fields(cfg) if not f.name.startswith("_")
        }
    os.makedirs(output_dir, exist_ok=True)
    path = Path(output_dir) / "run_config.json"
    path.write_text(json.dumps(resolved, indent=2, sort_keys=True))
    return path


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)
