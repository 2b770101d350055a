"""Service CLI flags of the backends and the blind judge, and the builders behind them.

Kept apart from `ffr.teacher.service` so the service module stays about HTTP. Flags of the
``openai`` backend map one to one onto `OpenAITeacherConfig`; the frame policy flags must
match the training run's (`--fps`, `--max_frames`, `--video_max_pixels` of `r1v.grpo`), so
that frame indices in a patch mean the frames the student saw. Keys are read from files,
never from the command line: ``--teacher-api-key-file`` is the upstream endpoint's key
(``--api-key-file`` stays the service's own bearer key); every key read is registered with
`ffr.redact` at once.
"""
from __future__ import annotations

import argparse
import json
from typing import Optional

from ffr.redact import register_secret
from ffr.teacher.backends import BACKENDS, TeacherBackend
from ffr.teacher.openai_backend import JSON_MODES, PROTOCOLS, OpenAITeacher, OpenAITeacherConfig
from ffr.teacher.tools import DEFAULT_FRAME_CACHE_BYTES, configure_frame_cache
from ffr.teacher.upstream import DEFAULT_MAX_REPLY_BYTES
from r1v.vision import VisionConfig

#: every backend the service CLI can build: the model-free ones of `BACKENDS` plus ``openai``
BACKEND_NAMES = sorted([*BACKENDS, OpenAITeacher.name])


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def add_backend_args(p: argparse.ArgumentParser) -> None:
    """Flags of the ``openai`` backend, the judge and leak regeneration."""
    g = p.add_argument_group("openai backend (--backend openai)")
    g.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://host:8000/v1")
    g.add_argument("--model", help="model name the endpoint serves (e.g. zai-org/GLM-4.5V)")
    g.add_argument("--protocol", choices=PROTOCOLS, default="auto",
                   help="tool calling: native 'tools', a 'text' action line (servers without tool calling, "
                        "GLM-4.5V's API), or 'auto' (native, falling back to text if refused)")
    g.add_argument("--teacher-api-key-file", help="file holding the endpoint's API key")
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
    g.add_argument("--extra-body", type=_json_object, default=None,
                   help='JSON merged into each request, e.g. \'{"chat_template_kwargs": {"enable_thinking": false}}\'')
    g.add_argument("--request-timeout-s", type=float, default=120.0, help="SDK timeout of one model call")
    g.add_argument("--sdk-max-retries", type=int, default=2, help="SDK retries of a failed model call")
    g.add_argument("--max-model-concurrency", type=int, default=32, help="model calls in flight at once")
    g.add_argument("--max-reply-bytes", type=int, default=DEFAULT_MAX_REPLY_BYTES,
                   help="bytes read of one upstream reply; a longer one ends the item as reply_too_large "
                        "and is never sent back upstream")
    f = p.add_argument_group("frame policy (must match training)")
    f.add_argument("--fps", type=float, default=2.0)
    f.add_argument("--min-frames", type=int, default=4)
    f.add_argument("--max-frames", type=int, default=16)
    f.add_argument("--video-max-pixels", type=int, default=128 * 28 * 28)
    f.add_argument("--patch-factor", type=int, default=28, help="28 for Qwen2.5-VL students, 32 for Qwen3-VL")
    f.add_argument("--frame-cache-mb", type=float, default=DEFAULT_FRAME_CACHE_BYTES / 2**20,
                   help="decoded student frames kept across the items of one video, in MiB of pixels (0: off)")
    j = p.add_argument_group("leak checks")
    j.add_argument("--regenerate-leaks", type=int, default=1,
                   help="times a leaky patch is sent back to the teacher with the offending span quoted")
    j.add_argument("--judge-model", default=None, help="blind-test judge model (off when unset)")
    j.add_argument("--judge-base-url", default=None, help="judge endpoint (default: --base-url)")
    j.add_argument("--judge-api-key-file", default=None, help="judge key file (default: --teacher-api-key-file)")
    j.add_argument("--judge-samples", type=int, default=3, help="judge answers with and without the patch each")
    j.add_argument("--judge-extra-body", type=_json_object, default=None, help="JSON merged into judge requests")


def read_key(path: Optional[str]) -> Optional[str]:
    """The stripped contents of a key file; SystemExit naming the file when it is empty or missing."""
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            key = fh.read().strip()
    except OSError as exc:
        raise SystemExit(f"cannot read key file {path!r}: {exc}") from exc
    if not key:
        raise SystemExit(f"key file {path!r} is empty")
    register_secret(key)
    return key


def build_backend(args: argparse.Namespace) -> TeacherBackend:
    """The backend named by ``--backend``; SystemExit with the missing flag for ``openai``."""
    if args.frame_cache_mb < 0:
        raise SystemExit(f"--frame-cache-mb must be >= 0, got {args.frame_cache_mb}")
    configure_frame_cache(int(args.frame_cache_mb * 2**20))
    if args.backend != OpenAITeacher.name:
        return BACKENDS[args.backend]()
    missing = [flag for flag, value in (("--base-url", args.base_url), ("--model", args.model)) if not value]
    if missing:
        raise SystemExit(f"--backend openai needs {' and '.join(missing)}")
    vision = VisionConfig(fps=args.fps, min_frames=args.min_frames, max_frames=args.max_frames,
                          video_min_pixels=args.video_max_pixels, video_max_pixels=args.video_max_pixels,
                          patch_factor=args.patch_factor)
    try:
        config = OpenAITeacherConfig(
            base_url=args.base_url, model=args.model, api_key=read_key(args.teacher_api_key_file),
            protocol=args.protocol, json_mode=args.json_mode, coords=args.box_coords, max_turns=args.max_turns,
            max_images=args.max_images, max_tokens=args.max_tokens, temperature=args.temperature,
            top_p=args.top_p, extra_body=args.extra_body, request_timeout_s=args.request_timeout_s,
            sdk_max_retries=args.sdk_max_retries, max_concurrency=args.max_model_concurrency,
            max_reply_bytes=args.max_reply_bytes, vision=vision)
    except ValueError as exc:
        raise SystemExit(f"openai backend: {exc}") from exc
    return OpenAITeacher(config)


def build_judge(args: argparse.Namespace):
    """A `BlindJudge` when ``--judge-model`` is set, else None."""
    if not args.judge_model:
        return None
    import openai

    from ffr.teacher.judge import BlindJudge

    base_url = args.judge_base_url or args.base_url
    if not base_url:
        raise SystemExit("--judge-model needs --judge-base-url (or --base-url)")
    key = read_key(args.judge_api_key_file or args.teacher_api_key_file)
    from ffr.teacher.upstream import capped_http_client

    client = openai.AsyncOpenAI(base_url=base_url, api_key=key or "EMPTY", timeout=60.0, max_retries=2,
                                http_client=capped_http_client(args.max_reply_bytes))
    return BlindJudge(client, args.judge_model, samples=args.judge_samples, extra_body=args.judge_extra_body)
