"""One way to configure a teacher endpoint (`ffr.endpoint`): one key reader, one set of judge
flags and one judge builder, the frame policy from `VisionConfig`, deprecated flag spellings,
and one registry of teacher backends, each built by its own ``from_args``.

Before, key files were read five different ways (a non-UTF-8 key file was a traceback in
``ffr.mine`` and the trainer, a folder "does not exist" in the trainer), the service spelled the
judge's endpoint ``--judge-base-url`` and ``ffr.audit`` / ``eval.run`` ``--judge-url``, and the
service's upstream key flag ``--teacher-api-key-file`` differed from the trainer's
``--teacher_api_key_file`` (a different key) by dashes only.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import types

import pytest

from eval import run as erun
from ffr import audit, mine
from ffr.config import take_teacher_secret
from ffr.endpoint import (FRAME_POLICY_FIELDS, DeprecatedFlagWarning, KeyFileError, add_deprecated_alias,
                          frame_policy, read_key_file)
from ffr.redact import MASK, redact
from ffr.teacher import service
from ffr.teacher.backend_args import BACKEND_NAMES, BACKENDS, build_backend, build_service_judge
from ffr.teacher.backends import AnnotationBackend
from ffr.teacher.judge import BlindJudge
from ffr.teacher.openai_backend import OpenAITeacher
from r1v import teacher_traces
from r1v.vision import VisionConfig

JUDGE_FLAGS = ["--judge-base-url", "http://127.0.0.1:9/v1", "--judge-model", "judge-m", "--judge-timeout-s", "7"]
BLIND_FLAGS = ["--judge-samples", "5", "--judge-extra-body", '{"top_k": 2}']


def unusable_key(tmp_path, kind):
    path = tmp_path / "key"
    if kind == "folder":
        path.mkdir()
    elif kind == "empty":
        path.write_text(" \n\t\n")
    elif kind == "not-utf8":
        path.write_bytes(b"\xff\xfe sk-\x80\x81")
    return path  # "missing": never created


# ------------------------------------------------------------------ the key reader
def test_key_is_stripped_and_registered_for_redaction(tmp_path):
    path = tmp_path / "key"
    path.write_text("  sk-endpoint-READER-0001\n")
    assert read_key_file(path, "--api-key-file") == "sk-endpoint-READER-0001"
    assert redact("echoed: Bearer sk-endpoint-READER-0001") == f"echoed: Bearer {MASK}"


@pytest.mark.parametrize("kind, why", [("folder", "cannot read the key"), ("empty", "the file is empty"),
                                       ("missing", "cannot read the key"), ("not-utf8", "not UTF-8")])
def test_unusable_key_file_is_one_line_naming_flag_and_file(tmp_path, kind, why):
    path = unusable_key(tmp_path, kind)
    with pytest.raises(KeyFileError) as exc:
        read_key_file(path, "--judge-api-key-file")
    message = str(exc.value)
    assert message.startswith(f"--judge-api-key-file {path}: ") and why in message and "\n" not in message


@pytest.mark.parametrize("kind", ["folder", "not-utf8"])
def test_the_trainer_reads_its_key_file_with_the_same_reader(tmp_path, kind):
    """Old code: a folder was reported as "does not exist"; a non-UTF-8 file a UnicodeDecodeError."""
    path = unusable_key(tmp_path, kind)
    args = types.SimpleNamespace(teacher_api_key_file=str(path), teacher_api_key=None)
    with pytest.raises(KeyFileError, match=f"^teacher_api_key_file {path}: cannot read the key"):
        take_teacher_secret(args)


@pytest.mark.parametrize("kind", ["folder", "empty", "missing", "not-utf8"])
def test_mine_reports_an_unusable_key_file_in_one_line(tmp_path, capsys, kind):
    """Old code: a non-UTF-8 key file ended ``ffr.mine`` with a UnicodeDecodeError traceback."""
    path = unusable_key(tmp_path, kind)
    code = mine.main(["--teacher-url", "http://127.0.0.1:9", "--data", str(tmp_path / "d.json"),
                      "--completions", str(tmp_path), "--out", str(tmp_path / "o.jsonl"),
                      "--api-key-file", str(path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"error: --api-key-file {path}: ") and len(err.splitlines()) == 1


def test_service_refuses_an_unusable_upstream_key_in_one_line(tmp_path):
    path = unusable_key(tmp_path, "not-utf8")
    args = service._parse_args(["--allowed-root", str(tmp_path), "--backend", "openai", "--base-url",
                                "http://127.0.0.1:9/v1", "--model", "m", "--upstream-api-key-file", str(path)])
    with pytest.raises(SystemExit, match=f"--upstream-api-key-file {path}: cannot read the key"):
        build_backend(args)


# ------------------------------------------------------------------ renamed flags
def test_the_services_upstream_key_flag_cannot_be_taken_for_the_trainers(tmp_path, recwarn):
    key = tmp_path / "upstream.key"
    key.write_text("sk-upstream-NEWNAME-0002")
    args = service._parse_args(["--allowed-root", str(tmp_path), "--upstream-api-key-file", str(key)])
    assert args.upstream_api_key_file == str(key)
    assert not [w for w in recwarn if issubclass(w.category, DeprecatedFlagWarning)]
    with pytest.warns(DeprecatedFlagWarning, match="--teacher-api-key-file is deprecated.*--upstream-api-key-file"):
        old = service._parse_args(["--allowed-root", str(tmp_path), "--teacher-api-key-file", str(key)])
    assert old.upstream_api_key_file == str(key)


@pytest.mark.parametrize("parse, argv", [
    (audit.parse_args, ["log.jsonl"]),
    (lambda argv: service._parse_args(argv), ["--allowed-root", "."]),
    (lambda argv: erun.build_parser().parse_args(argv), ["--model", "m", "--out", "o"]),
])
def test_judge_url_is_a_deprecated_alias(parse, argv):
    with pytest.warns(DeprecatedFlagWarning, match="--judge-url is deprecated.*--judge-base-url"):
        args = parse([*argv, "--judge-url", "http://127.0.0.1:9/v1", "--judge-model", "j"])
    assert args.judge_base_url == "http://127.0.0.1:9/v1"


def test_trace_frame_flags_are_the_vision_config_ones_with_the_old_spellings_deprecated(tmp_path):
    base = ["--base-url", "u", "--model", "m", "--data", "d", "--out", "o"]
    parser = teacher_traces.build_parser()
    assert frame_policy(parser.parse_args(base)) == VisionConfig()
    with pytest.warns(DeprecatedFlagWarning) as record:
        args = parser.parse_args([*base, "--frames", "8", "--frame-max-pixels", str(64 * 28 * 28),
                                  "--video-min-pixels", str(32 * 28 * 28)])
    assert [str(w.message) for w in record] == [
        "--frames is deprecated and will be removed; use --max-frames",
        "--frame-max-pixels is deprecated and will be removed; use --video-max-pixels"]
    assert frame_policy(args) == VisionConfig(max_frames=8, video_max_pixels=64 * 28 * 28,
                                              video_min_pixels=32 * 28 * 28)


def test_an_alias_does_not_override_the_new_flags_default():
    p = argparse.ArgumentParser()
    p.add_argument("--new", type=int, default=3)
    add_deprecated_alias(p, "--old", "--new", "new", type=int)
    assert p.parse_args([]).new == 3


# ------------------------------------------------------------------ one judge flag set
def test_every_cli_that_builds_a_judge_takes_the_same_judge_flags(tmp_path, recwarn):
    key = tmp_path / "judge.key"
    key.write_text("sk-judge-SHARED-0003")
    flags = [*JUDGE_FLAGS, "--judge-api-key-file", str(key)]
    blind = [audit.parse_args(["log.jsonl", *flags, *BLIND_FLAGS]),
             service._parse_args(["--allowed-root", str(tmp_path), *flags, *BLIND_FLAGS])]
    answers = erun.resolve_args(["--model", "m", "--out", str(tmp_path / "o"), "--benchmarks", "mmvu",
                                 "--data-root-mmvu", "d", *flags])
    for args in [*blind, answers]:
        assert (args.judge_base_url, args.judge_model, args.judge_timeout_s) == ("http://127.0.0.1:9/v1", "judge-m", 7)
        assert args.judge_api_key_file == str(key)
    judges = [audit.build_judge(blind[0]), build_service_judge(blind[1])]
    for judge in judges:
        assert isinstance(judge, BlindJudge) and judge.model == "judge-m" and judge.samples == 5
        assert judge.extra_body == {"top_k": 2} and str(judge.client.base_url).startswith("http://127.0.0.1:9/v1")
        assert judge.client.api_key == "sk-judge-SHARED-0003" and judge.client.timeout == 7
    assert not [w for w in recwarn if issubclass(w.category, DeprecatedFlagWarning)]


def test_the_service_judge_defaults_to_the_teachers_endpoint_and_key(tmp_path):
    key = tmp_path / "upstream.key"
    key.write_text("sk-upstream-JUDGE-0004")
    args = service._parse_args(["--allowed-root", str(tmp_path), "--base-url", "http://127.0.0.1:8/v1",
                                "--upstream-api-key-file", str(key), "--judge-model", "j"])
    judge = build_service_judge(args)
    assert str(judge.client.base_url).startswith("http://127.0.0.1:8/v1")
    assert judge.client.api_key == "sk-upstream-JUDGE-0004"
    assert build_service_judge(service._parse_args(["--allowed-root", str(tmp_path)])) is None


@pytest.mark.parametrize("argv, message", [
    (["--judge-base-url", "http://x/v1"], "--judge-base-url needs --judge-model"),
    (["--judge-model", "j"], "--judge-model needs --judge-base-url"),
    (["--judge-samples", "0"], "--judge-samples must be >= 1"),
])
def test_bad_judge_flags_are_refused_alike_by_audit_and_service(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit):
        audit.parse_args(["log.jsonl", *argv])
    assert message in capsys.readouterr().err
    with pytest.raises(SystemExit, match=message):
        build_service_judge(service._parse_args(["--allowed-root", str(tmp_path), *argv]))


# ------------------------------------------------------------------ frame policy and backends
def test_frame_policy_flags_are_generated_from_vision_config(tmp_path):
    args = service._parse_args(["--allowed-root", str(tmp_path)])
    defaults = VisionConfig()
    assert {name: getattr(args, name) for name in FRAME_POLICY_FIELDS} == {
        name: getattr(defaults, name) for name in FRAME_POLICY_FIELDS}
    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(VisionConfig)}
    text = service_help()
    assert all(helps[name] in text for name in FRAME_POLICY_FIELDS)
    mine_args = mine.parse_args(["--teacher-url", "u", "--data", "d", "--completions", "c", "--out", "o",
                                 "--max-frames", "8"])
    assert (mine_args.fps, mine_args.min_frames, mine_args.max_frames) == (defaults.fps, defaults.min_frames, 8)


def service_help() -> str:
    """``python -m ffr.teacher.service --help``, whitespace collapsed (argparse wraps the lines)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        service._parse_args(["--help"])
    return " ".join(out.getvalue().split())


def test_every_backend_is_in_one_registry_and_builds_itself_from_the_flags(tmp_path):
    assert set(BACKENDS) == {"annotation", "openai"} and BACKEND_NAMES == sorted(BACKENDS)
    key = tmp_path / "upstream.key"
    key.write_text("sk-upstream-REGISTRY-0005")
    argv = ["--allowed-root", str(tmp_path), "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
            "--upstream-api-key-file", str(key), "--max-frames", "8", "--patch-factor", "32"]
    for name, cls in BACKENDS.items():
        backend = build_backend(service._parse_args([*argv, "--backend", name]))
        assert type(backend) is cls and backend.name == name
    annotation = BACKENDS["annotation"].from_args(service._parse_args(argv))
    assert isinstance(annotation, AnnotationBackend)
    teacher = OpenAITeacher.from_args(service._parse_args(argv))
    assert teacher.config.vision == VisionConfig(max_frames=8, patch_factor=32)
    assert teacher.config.api_key == "sk-upstream-REGISTRY-0005" and redact(teacher.config.api_key) == MASK
    with pytest.raises(SystemExit, match="--backend openai: needs --model"):
        build_backend(service._parse_args(["--allowed-root", str(tmp_path), "--backend", "openai",
                                           "--base-url", "http://127.0.0.1:9/v1"]))
    with pytest.raises(SystemExit, match="--backend openai: frame policy"):
        build_backend(service._parse_args([*argv, "--backend", "openai", "--min-frames", "10"]))
