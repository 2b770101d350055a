"""How every command line configures a model endpoint: key files, the judge, the frame policy.

One of each, shared by the teacher service (``ffr.teacher.service``), the offline tools
(``ffr.mine``, ``ffr.audit``, ``r1v.teacher_traces``), the evaluator (``eval.run``) and the
trainer (``ffr.config.take_teacher_secret``):

- `read_key_file`: the one key reader. Keys live in files, never on the command line; the key
  is registered with `ffr.redact` before it is returned, so no caller can forget to, and every
  unusable file (missing, a folder, not UTF-8, empty) is a `KeyFileError` whose message is one
  line naming the flag and the file.
- `add_judge_args` / `judge_endpoint` / `build_judge`: one set of judge flags
  (``--judge-base-url --judge-model --judge-api-key-file --judge-timeout-s``, plus
  ``--judge-samples --judge-extra-body`` for the blind-test judge) and one builder of the
  blind-test judge (`ffr.teacher.judge.BlindJudge`).
- `add_frame_policy_args` / `frame_policy`: the frame-policy flags generated from the fields
  of `r1v.vision.VisionConfig` (names, defaults and help), so a tool cannot drift from the
  policy training uses.
- `add_deprecated_alias`: an old flag spelling kept working with a `DeprecatedFlagWarning`.

Standard library only at import time (``openai`` and ``r1v.vision``, which imports torch, are
imported where needed), so a CLI that uses only the key reader stays light.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ffr.redact import register_secret

if TYPE_CHECKING:
    from ffr.teacher.judge import BlindJudge
    from r1v.vision import VisionConfig

#: the `VisionConfig` fields that decide which frames a student sees and how large they are
FRAME_POLICY_FIELDS = ("fps", "min_frames", "max_frames", "video_min_pixels", "video_max_pixels", "patch_factor")
#: the fields that decide frame *times* only (enough for a tool that never decodes pixels)
FRAME_TIME_FIELDS = ("fps", "min_frames", "max_frames")


class KeyFileError(ValueError):
    """A key file that cannot serve as a key; the message is one line: ``<flag> <path>: <why>``."""


class DeprecatedFlagWarning(FutureWarning):
    """A renamed flag was given by its old spelling.

    A FutureWarning rather than a DeprecationWarning: Python shows those to the person running
    the command by default, and they are the one who has to change the spelling.
    """


# ------------------------------------------------------------------ keys
def read_key_file(path: str | os.PathLike, flag: str) -> str:
    """The key held in `path` (surrounding whitespace stripped), registered for redaction.

    `flag` names the option or config field that gave the file; messages start with it.
    Raises `KeyFileError` ``"<flag> <path>: cannot read the key (<reason>)"`` when the file is
    missing, a folder, unreadable or not UTF-8, and ``"<flag> <path>: the file is empty"`` when
    it holds only whitespace. The key is registered with `ffr.redact.register_secret` before
    it is returned, so it is masked in every log line and detail from then on.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise KeyFileError(f"{flag} {path}: cannot read the key (not UTF-8 text)") from exc
    except OSError as exc:
        raise KeyFileError(f"{flag} {path}: cannot read the key ({exc.strerror or type(exc).__name__})") from exc
    key = text.strip()
    if not key:
        raise KeyFileError(f"{flag} {path}: the file is empty")
    register_secret(key)
    return key


# ------------------------------------------------------------------ deprecated spellings
def add_deprecated_alias(parser, old: str, new: str, dest: str, **kwargs) -> None:
    """Accept flag `old` as a spelling of `new` (same `dest`); each use warns.

    `kwargs` are those of the new flag that parse the value (``type=int``). The alias has no
    default of its own (the new flag's stands) and is hidden from ``--help``.
    """
    message = f"{old} is deprecated and will be removed; use {new}"

    class _Alias(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            warnings.warn(message, DeprecatedFlagWarning, stacklevel=2)
            setattr(namespace, self.dest, values)

    parser.add_argument(old, dest=dest, action=_Alias, default=argparse.SUPPRESS, help=argparse.SUPPRESS,
                        **kwargs)


# ------------------------------------------------------------------ judge
def json_object(text: str) -> dict:
    """argparse type of a flag whose value is a JSON object (``--judge-extra-body``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def add_judge_args(p: argparse.ArgumentParser, *, blind: bool = True, base_url_default: str = "") -> None:
    """The judge flags of every CLI that builds a judge (one spelling everywhere).

    ``--judge-base-url --judge-model --judge-api-key-file --judge-timeout-s``; with `blind`
    (the blind-test judge of `ffr.teacher.judge`) also ``--judge-samples --judge-extra-body``.
    ``--judge-url`` is a deprecated alias of ``--judge-base-url``. `base_url_default` only
    words the help of a CLI whose `judge_endpoint` call passes a fallback URL.
    """
    g = p.add_argument_group("judge")
    g.add_argument("--judge-base-url", default=None,
                   help="OpenAI-compatible base URL of the judge (.../v1)" + (f" (default: {base_url_default})"
                                                                            if base_url_default else ""))
    add_deprecated_alias(g, "--judge-url", "--judge-base-url", "judge_base_url")
    g.add_argument("--judge-model", default=None, help="judge model name (the judge is off when unset)")
    g.add_argument("--judge-api-key-file", default=None, help="file holding the judge endpoint's API key")
    g.add_argument("--judge-timeout-s", type=float, default=60.0, help="timeout of one judge request")
    if blind:
        g.add_argument("--judge-samples", type=int, default=3, help="judge samples per arm (majority vote)")
        g.add_argument("--judge-extra-body", type=json_object, default=None,
                       help='JSON object merged into judge requests, e.g. \'{"chat_template_kwargs": '
                            '{"enable_thinking": false}}\' for a reasoning model')


@dataclasses.dataclass(frozen=True)
class JudgeEndpoint:
    """Where the judge is and how to reach it (the key already registered for redaction)."""

    base_url: str
    model: str
    api_key: Optional[str] = dataclasses.field(default=None, repr=False)
    timeout_s: float = 60.0


def judge_endpoint(args: argparse.Namespace, fallback_base_url: Optional[str] = None,
                   fallback_key: Optional[str] = None) -> Optional[JudgeEndpoint]:
    """The judge named by the `add_judge_args` flags, or None when ``--judge-model`` is unset.

    Without ``--judge-base-url`` the judge talks to `fallback_base_url`; without
    ``--judge-api-key-file`` it uses `fallback_key` (both: the same endpoint as the teacher's,
    in the service). Raises ValueError naming the flag: a URL without a model, a model without
    a URL, a timeout <= 0, fewer than one sample; `KeyFileError` for an unusable key file.
    """
    # Checked even with the judge off: a bad value is a typo to report, not a setting to ignore.
    if not args.judge_timeout_s > 0:
        raise ValueError(f"--judge-timeout-s must be > 0, got {args.judge_timeout_s}")
    if getattr(args, "judge_samples", 1) < 1:
        raise ValueError(f"--judge-samples must be >= 1, got {args.judge_samples}")
    base_url = args.judge_base_url or fallback_base_url
    if not args.judge_model:
        if args.judge_base_url:
            raise ValueError("--judge-base-url needs --judge-model")
        return None
    if not base_url:
        raise ValueError("--judge-model needs --judge-base-url")
    key = read_key_file(args.judge_api_key_file, "--judge-api-key-file") if args.judge_api_key_file else fallback_key
    return JudgeEndpoint(base_url=base_url, model=args.judge_model, api_key=key, timeout_s=args.judge_timeout_s)


def build_judge(args: argparse.Namespace, fallback_base_url: Optional[str] = None,
                fallback_key: Optional[str] = None, max_reply_bytes: Optional[int] = None) -> Optional["BlindJudge"]:
    """The blind-test judge of the `add_judge_args` flags (``blind=True``), or None when off.

    Errors as `judge_endpoint`. Its client reads at most `max_reply_bytes` of a reply
    (default: `ffr.teacher.upstream.DEFAULT_MAX_REPLY_BYTES`), like the teacher's own client.
    """
    endpoint = judge_endpoint(args, fallback_base_url, fallback_key)
    if endpoint is None:
        return None
    import openai

    from ffr.teacher.judge import BlindJudge
    from ffr.teacher.upstream import DEFAULT_MAX_REPLY_BYTES, capped_http_client

    client = openai.AsyncOpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key or "EMPTY",
                                timeout=endpoint.timeout_s, max_retries=2,
                                http_client=capped_http_client(max_reply_bytes or DEFAULT_MAX_REPLY_BYTES))
    return BlindJudge(client, endpoint.model, samples=args.judge_samples, extra_body=args.judge_extra_body)


# ------------------------------------------------------------------ frame policy
def add_frame_policy_args(p: argparse.ArgumentParser, fields: tuple[str, ...] = FRAME_POLICY_FIELDS,
                          title: str = "frame policy (must match training)") -> None:
    """One flag per `VisionConfig` field in `fields` (``max_frames`` -> ``--max-frames``).

    Defaults and help come from the dataclass, so they are training's defaults by construction.
    """
    from r1v.vision import VisionConfig

    g = p.add_argument_group(title)
    for f in dataclasses.fields(VisionConfig):
        if f.name in fields:
            g.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default,
                           help=f"{f.metadata['help']} (default {f.default})")


def frame_policy(args: argparse.Namespace, fields: tuple[str, ...] = FRAME_POLICY_FIELDS) -> "VisionConfig":
    """The `VisionConfig` of the `add_frame_policy_args` flags in `fields` (other fields default).

    Raises ValueError ``"frame policy: ..."`` for a combination `VisionConfig` refuses (e.g.
    ``--min-frames`` above ``--max-frames``, ``--video-min-pixels`` above ``--video-max-pixels``).
    """
    from r1v.vision import VisionConfig

    try:
        return VisionConfig(**{name: getattr(args, name) for name in fields})
    except ValueError as exc:
        raise ValueError(f"frame policy: {exc}") from exc
