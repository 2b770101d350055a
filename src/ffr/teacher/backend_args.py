"""Service CLI flags of the backends and the blind judge, and the one backend registry.

Kept apart from `ffr.teacher.service` so the service module stays about HTTP. `BACKENDS` holds
every backend the service can run; each builds itself from the parsed flags with its own
``from_args`` (`TeacherBackend.from_args`). Flags of the ``openai`` backend map one to one onto
`OpenAITeacherConfig`; the frame policy flags are generated from `r1v.vision.VisionConfig`
(`ffr.endpoint.add_frame_policy_args`) and must match the training run's (``--fps``,
``--max_frames``, ``--video_min_pixels``, ``--video_max_pixels`` of ``r1v.grpo``), so that frame
indices in a patch mean the frames the student saw. Keys are read from files, never from the
command line, by `ffr.endpoint.read_key_file` (which registers them with `ffr.redact`):
``--upstream-api-key-file`` is the upstream model endpoint's key, ``--api-key-file`` the
service's own bearer key. ``--teacher-api-key-file`` is the deprecated spelling of
``--upstream-api-key-file``: one dash away from the trainer's ``--teacher_api_key_file`` (the
trainer's key *for the service*), it was too easy to hand one key to the other.
"""
from __future__ import annotations

import argparse
from typing import Optional

from ffr.endpoint import (add_deprecated_alias, add_frame_policy_args, add_judge_args, build_judge, json_object,
                          read_key_file)
from ffr.teacher.backends import AnnotationBackend, TeacherBackend
from ffr.teacher.judge import BlindJudge
from ffr.teacher.openai_backend import JSON_MODES, PROTOCOLS, OpenAITeacher
from ffr.teacher.tools import DEFAULT_FRAME_CACHE_BYTES, configure_frame_cache
from ffr.teacher.upstream import DEFAULT_MAX_REPLY_BYTES

#: name -> backend class: every backend the service CLI can build, each with its own ``from_args``.
#: It lives here, not in `ffr.teacher.backends`, because the model backends import that module
#: (for `TeacherBackend`): a registry there could not name them without an import cycle.
BACKENDS: dict[str, type[TeacherBackend]] = {cls.name: cls for cls in (AnnotationBackend, OpenAITeacher)}
BACKEND_NAMES = sorted(BACKENDS)


def add_backend_args(p: argparse.ArgumentParser) -> None:
    """``--backend`` (a `BACKENDS` name), the flags of the ``openai`` backend, the frame policy,
    the judge and leak regeneration."""
    p.add_argument("--backend", choices=BACKEND_NAMES, default="annotation",
                   help="annotation: patches from the data's evidence fields; openai: a tool-using VLM behind "
                        "an OpenAI-compatible endpoint (flags below)")
    g = p.add_argument_group("openai backend (--backend openai)")
    g.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://host:8000/v1")
    g.add_argument("--model", help="model name the endpoint serves (e.g. zai-org/GLM-4.5V)")
    g.add_argument("--protocol", choices=PROTOCOLS, default="auto",
                   help="tool calling: native 'tools', a 'text' action line (servers without tool calling, "
                        "GLM-4.5V's API), or 'auto' (native, falling back to text if refused)")
    g.add_argument("--upstream-api-key-file", help="file holding the upstream endpoint's API key")
    add_deprecated_alias(g, "--teacher-api-key-file", "--upstream-api-key-file", "upstream_api_key_file")
    g.add_argument("--json-mode", choices=JSON_MODES, default="auto",
                   help="response_format of the final patch: 'auto' = json_schema with native tools, none "
                        "with text actions (dropped if the server refuses it)")
    g.add_argument("--box-coords", choices=["relative", "norm1000"], default="relative",
                   help="coordinates the tools and patch regions declare (norm1000: GLM's 0-1000 grid)")
    g.add_argument("--max-turns", type=int, default=4, help="model calls per item (tool turns + the patch)")
    g.add_argument("--max-images", type=int, default=32, help="images per item: the student's frames + tool images")
    g.add_argument("--max-tokens", type=int, default=1024, help="max_tokens of each model call")
    g.add_argument("--temperature", type=float, default=0.2, help="sampling temperature of the teacher")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling of the teacher")
    g.add_argument("--extra-body", type=json_object, default=None,
                   help='JSON merged into each request, e.g. \'{"chat_template_kwargs": {"enable_thinking": false}}\'')
    g.add_argument("--request-timeout-s", type=float, default=120.0, help="SDK timeout of one model call")
    g.add_argument("--sdk-max-retries", type=int, default=2, help="SDK retries of a failed model call")
    g.add_argument("--max-model-concurrency", type=int, default=32, help="model calls in flight at once")
    g.add_argument("--max-reply-bytes", type=int, default=DEFAULT_MAX_REPLY_BYTES,
                   help="bytes read of one upstream reply; a longer one ends the item as reply_too_large "
                        "and is never sent back upstream")
    add_frame_policy_args(p)
    p.add_argument("--frame-cache-mb", type=float, default=DEFAULT_FRAME_CACHE_BYTES / 2**20,
                   help="decoded student frames kept across the items of one video, in MiB of pixels (0: off)")
    j = p.add_argument_group("leak checks")
    j.add_argument("--regenerate-leaks", type=int, default=1,
                   help="times a leaky patch is sent back to the teacher with the offending span quoted")
    # The judge defaults to the teacher's endpoint and key (see service.main).
    add_judge_args(p, base_url_default="--base-url")


def build_backend(args: argparse.Namespace) -> TeacherBackend:
    """``BACKENDS[--backend].from_args(args)``; SystemExit with a one-line reason for bad flags."""
    if args.frame_cache_mb < 0:
        raise SystemExit(f"--frame-cache-mb must be >= 0, got {args.frame_cache_mb}")
    configure_frame_cache(int(args.frame_cache_mb * 2**20))
    try:
        return BACKENDS[args.backend].from_args(args)
    except ValueError as exc:  # ffr.endpoint.KeyFileError included
        raise SystemExit(f"--backend {args.backend}: {exc}") from exc


def build_service_judge(args: argparse.Namespace) -> Optional[BlindJudge]:
    """The service's blind-test judge (`ffr.endpoint.build_judge`), or None without ``--judge-model``.

    It defaults to the teacher's own endpoint: ``--base-url`` and the ``--upstream-api-key-file``
    key. SystemExit with a one-line reason for bad judge flags or an unusable key file.
    """
    try:
        upstream_key = (read_key_file(args.upstream_api_key_file, "--upstream-api-key-file")
                        if args.judge_model and args.upstream_api_key_file and not args.judge_api_key_file
                        else None)
        return build_judge(args, fallback_base_url=args.base_url, fallback_key=upstream_key,
                           max_reply_bytes=args.max_reply_bytes)
    except ValueError as exc:  # ffr.endpoint.KeyFileError included
        raise SystemExit(f"judge: {exc}") from exc
