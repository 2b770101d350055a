"""FFR and teacher-client configuration fields.

`FFRArguments` is a plain dataclass whose fields all carry defaults, so it can be
mixed into the trainer's configuration by multiple inheritance::

    @dataclass
    class GRPOConfig(FFRArguments, TrainingArguments): ...

or held by composition (`cfg.ffr = FFRArguments(...)`). Every field has a
`metadata={"help": ...}` entry, so `transformers.HfArgumentParser` exposes it as a
CLI / YAML option. All names start with ``ffr_`` or ``teacher_`` so they never
collide with the inherited R1-V/TRL knobs.

Validation lives in :func:`validate_ffr_config`; it raises ``ValueError`` whose
message starts with the offending field name. ``FFRArguments.__post_init__`` runs
it and then chains to the next ``__post_init__`` in the MRO (e.g. the one of
``TrainingArguments``), so the mixin is cooperative in either position.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from ffr.endpoint import read_key_file
from ffr.redact import register_secret
# The one list of secret fields (and the rule for secret-looking names) lives in r1v.run_config.
from r1v.run_config import REDACTED, SECRET_FIELDS, is_secret_field  # noqa: F401

logger = logging.getLogger(__name__)

EXTRA_VISUAL_MODES = ("none", "dense_frames", "region_crops")
FAILED_STEP_ACTIONS = ("error", "warn")


@dataclass
class FFRArguments:
    """FFR switches (paper Sec. 3, Eq. 4-9) and teacher-service client settings."""

    ffr_enable: bool = field(
        default=False,
        metadata={"help": "Turn on FFR: failed first-pass rollouts are sent to the teacher and "
                          "re-generated with its evidence patch (paper Eq. 5-7). Off = vanilla GRPO."},
    )
    ffr_patch_tax: float = field(
        default=0.3,
        metadata={"help": "Patch tax lambda in [0, 1] of the RIR scalar (paper Eq. 8): a repaired "
                          "rollout earns (1 - lambda) * reward. Paper default 0.3."},
    )
    ffr_format_weight: float = field(
        default=1.0,
        metadata={"help": "Weight w_fmt of the format reward of the chosen rollout in the RIR scalar (Eq. 8)."},
    )
    ffr_correct_threshold: float = field(
        default=1.0,
        metadata={"help": "First-pass correctness c_i = 1[reward >= threshold] (Eq. 4). 1.0 is the paper's "
                          "binary rule; lower it to stop sending nearly-right graded answers "
                          "(numerical / OCR / free-form) to the teacher."},
    )
    ffr_use_gt: bool = field(
        default=True,
        metadata={"help": "Give the teacher the gold answer (Eq. 5). False = the paper's 'no GT reference' "
                          "ablation: the teacher sees only video, question and the student's response."},
    )
    ffr_visual_context: bool = field(
        default=True,
        metadata={"help": "Show key frames and spatial regions of the patch to the student. False = the "
                          "paper's 'no visual context' ablation (error focus, markers and guidance only)."},
    )
    ffr_extra_visual: Literal["none", "dense_frames", "region_crops"] = field(
        default="none",
        metadata={"help": "Optional extra images for the patched prompt: 'dense_frames' re-samples frames "
                          "inside the key-frame range, 'region_crops' crops the patch regions."},
    )
    ffr_extra_visual_max_images: int = field(
        default=4,
        metadata={"help": "Upper bound on extra images added to one patched prompt (ffr_extra_visual)."},
    )
    ffr_patch_log: bool = field(
        default=False,
        metadata={"help": "Write every patch of a step (request, status, patch, rewards) to a JSONL file "
                          "under output_dir."},
    )
    teacher_url: Optional[str] = field(
        default=None,
        metadata={"help": "Base URL of the teacher service, e.g. http://127.0.0.1:8000 (required with ffr_enable)."},
    )
    teacher_api_key: Optional[str] = field(
        default=None,
        repr=False,  # keep the secret out of logged reprs
        metadata={"help": "Bearer token for the teacher service, if it requires one. Left out of repr() "
                          "and redacted by ffr_config_dict."},
    )
    teacher_api_key_file: Optional[str] = field(
        default=None,
        metadata={"help": "File holding the bearer token of the teacher *service* (the service's --api-key-file; "
                          "not the upstream model's key, which only the service holds: its "
                          "--upstream-api-key-file). Alternative to teacher_api_key that keeps the secret out "
                          "of the command line, process lists and the logged argv."},
    )
    teacher_timeout_s: float = field(
        default=120.0,
        metadata={"help": "HTTP timeout of one teacher request, in seconds."},
    )
    teacher_step_deadline_s: float = field(
        default=300.0,
        metadata={"help": "Wall-clock budget for all teacher requests of one training step; rollouts whose "
                          "patch has not arrived by then train unassisted."},
    )
    teacher_max_concurrency: int = field(
        default=16,
        metadata={"help": "Maximum teacher requests in flight per rank."},
    )
    teacher_max_retries: int = field(
        default=2,
        metadata={"help": "Retries of a failed teacher request (connection errors, 5xx), within the step deadline."},
    )
    teacher_backoff_s: float = field(
        default=1.0,
        metadata={"help": "Base of the exponential backoff between retries, in seconds."},
    )
    teacher_breaker_failures: int = field(
        default=5,
        metadata={"help": "Consecutive failed requests that open the circuit breaker (no teacher calls "
                          "until the cooldown ends)."},
    )
    teacher_breaker_cooldown_s: float = field(
        default=60.0,
        metadata={"help": "How long an open circuit breaker stays open, in seconds."},
    )
    teacher_cache: bool = field(
        default=True,
        metadata={"help": "Reuse the teacher's patch for an identical (sample, response) request."},
    )
    teacher_price_in_per_mtok: float = field(
        default=0.0,
        metadata={"help": "Price in USD per million prompt tokens of the teacher model; with the output price "
                          "it turns the teacher/tokens_in and teacher/tokens_out metrics into teacher/cost_usd "
                          "(0 = not logged)."},
    )
    teacher_price_out_per_mtok: float = field(
        default=0.0,
        metadata={"help": "Price in USD per million completion tokens of the teacher model (see "
                          "teacher_price_in_per_mtok)."},
    )
    teacher_max_failed_steps: int = field(
        default=20,
        metadata={"help": "Consecutive teacher rounds (one per generated batch: one per optimizer step unless "
                          "gradient_accumulation_steps > 1) in which, over all ranks, the teacher returned "
                          "errors or timeouts and not a single patch, before teacher_on_failed_steps acts. "
                          "Rounds without requests do not count; a round with a patch resets the count. "
                          "0 disables the check. Without it a dead or misconfigured teacher silently turns "
                          "FFR into vanilla GRPO."},
    )
    teacher_on_failed_steps: Literal["error", "warn"] = field(
        default="error",
        metadata={"help": "What teacher_max_failed_steps failed rounds in a row do: 'error' stops the run "
                          "(every rank raises, at the same step), 'warn' logs a warning and trains on "
                          "unassisted."},
    )

    def __post_init__(self) -> None:
        validate_ffr_config(self)
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()


def ffr_field_names() -> list[str]:
    """Names of all FFR / teacher fields, in declaration order."""
    return [f.name for f in dataclasses.fields(FFRArguments)]


def _fail(name: str, value: Any, rule: str) -> None:
    raise ValueError(f"{name}: {rule} (got {value!r})")


def _check_bool(cfg: Any, name: str) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, bool):
        _fail(name, value, "must be a bool")


def _check_number(cfg: Any, name: str, low: float, high: float = math.inf,
                  low_inclusive: bool = True) -> None:
    """`value` must be a real number in [low, high] (or (low, high] when not low_inclusive)."""
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(name, value, "must be a finite number")
    below = value < low if low_inclusive else value <= low
    if below or value > high:
        bracket = "[" if low_inclusive else "("
        _fail(name, value, f"must lie in {bracket}{low}, {high}]")


def _check_int(cfg: Any, name: str, low: int) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(name, value, "must be an int")
    if value < low:
        _fail(name, value, f"must be >= {low}")


def _check_choice(cfg: Any, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(cfg, name)
    if value not in choices:
        _fail(name, value, f"must be one of {list(choices)}")


def _check_url(cfg: Any) -> None:
    url = cfg.teacher_url
    if url is None:
        if cfg.ffr_enable:
            _fail("teacher_url", url, "is required when ffr_enable is true")
        return
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) <= len("http://"):
        _fail("teacher_url", url, "must be an http:// or https:// URL")


def validate_ffr_config(cfg: Any) -> None:
    """Check every FFR / teacher field of `cfg` (an FFRArguments or a config that mixes it in).

    Raises ValueError("<field>: <rule> (got <value>)") on the first bad field.
    """
    for name in ("ffr_enable", "ffr_use_gt", "ffr_visual_context", "ffr_patch_log", "teacher_cache"):
        _check_bool(cfg, name)
    _check_number(cfg, "ffr_patch_tax", 0.0, 1.0)
    _check_number(cfg, "ffr_format_weight", 0.0)
    # A threshold of 0 would mark every rollout correct and silently disable FFR.
    _check_number(cfg, "ffr_correct_threshold", 0.0, 1.0, low_inclusive=False)
    _check_choice(cfg, "ffr_extra_visual", EXTRA_VISUAL_MODES)
    _check_int(cfg, "ffr_extra_visual_max_images", 0)
    if cfg.ffr_extra_visual != "none":
        if cfg.ffr_extra_visual_max_images < 1:
            _fail("ffr_extra_visual_max_images", cfg.ffr_extra_visual_max_images,
                  f"must be >= 1 when ffr_extra_visual is {cfg.ffr_extra_visual!r}")
        # Extra images are cut from key frames / regions, which this ablation withholds.
        if not cfg.ffr_visual_context:
            _fail("ffr_extra_visual", cfg.ffr_extra_visual,
                  "must be 'none' when ffr_visual_context is false (the ablation withholds visual evidence)")
    _check_url(cfg)
    if cfg.teacher_api_key is not None and (not isinstance(cfg.teacher_api_key, str) or not cfg.teacher_api_key):
        _fail("teacher_api_key", REDACTED, "must be a non-empty string or None")
    key_file = cfg.teacher_api_key_file
    if key_file is not None and (not isinstance(key_file, str) or not key_file):
        _fail("teacher_api_key_file", key_file, "must be a non-empty path or None")
    if key_file is not None and cfg.teacher_api_key is not None:
        _fail("teacher_api_key_file", key_file, "give teacher_api_key or teacher_api_key_file, not both")
    _check_number(cfg, "teacher_timeout_s", 0.0, low_inclusive=False)
    _check_number(cfg, "teacher_step_deadline_s", 0.0, low_inclusive=False)
    _check_int(cfg, "teacher_max_concurrency", 1)
    _check_int(cfg, "teacher_max_retries", 0)
    _check_number(cfg, "teacher_backoff_s", 0.0)
    _check_int(cfg, "teacher_breaker_failures", 1)
    _check_number(cfg, "teacher_breaker_cooldown_s", 0.0)
    _check_number(cfg, "teacher_price_in_per_mtok", 0.0)
    _check_number(cfg, "teacher_price_out_per_mtok", 0.0)
    _check_int(cfg, "teacher_max_failed_steps", 0)
    _check_choice(cfg, "teacher_on_failed_steps", FAILED_STEP_ACTIONS)
    if cfg.ffr_enable and cfg.teacher_step_deadline_s < cfg.teacher_timeout_s:
        # Legal (the deadline cuts requests short) but usually a typo; say so once.
        logger.warning("teacher_step_deadline_s (%s) < teacher_timeout_s (%s): requests are bounded "
                       "by the step deadline", cfg.teacher_step_deadline_s, cfg.teacher_timeout_s)


def ffr_config_dict(cfg: Any) -> dict[str, Any]:
    """The FFR / teacher fields of `cfg` as a JSON-ready dict, with the API key redacted.

    Meant for the resolved-config file written to output_dir and for run loggers.
    """
    out = {name: getattr(cfg, name) for name in ffr_field_names()}
    for name in out:
        if is_secret_field(name) and out[name] is not None:
            out[name] = REDACTED
    return out


def take_teacher_secret(args: Any) -> Optional[str]:
    """Return the teacher key (from ``teacher_api_key`` or the file) and leave ``***`` / None in ``args``.

    The file is read by `ffr.endpoint.read_key_file` (the key reader of every CLI), which
    registers the key for redaction and raises `ffr.endpoint.KeyFileError` (a ValueError) with
    one line naming ``teacher_api_key_file`` and the file when it is missing, a folder, not
    UTF-8 or empty. A key given inline is registered too.
    """
    if args.teacher_api_key_file is not None:
        return read_key_file(args.teacher_api_key_file, "teacher_api_key_file")
    key = args.teacher_api_key
    if key is not None and key != REDACTED:
        args.teacher_api_key = REDACTED
        register_secret(key)
        return key
    return None
