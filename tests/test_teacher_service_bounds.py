"""Service-level bounds and odds and ends: frames per item and the frame cache in bytes, the
protocol fallback only on a refusal that names tools (and the cache keyed by protocol), no
unauthenticated API docs, no keyless non-loopback bind, and no silent ``-m ffr.teacher.server``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from PIL import Image

from ffr.teacher import service as service_module
from ffr.teacher import tools
from ffr.teacher.backends import AnnotationBackend
from ffr.teacher.openai_backend import OpenAITeacher, OpenAITeacherConfig
from ffr.teacher.schema import PatchResponse
from ffr.teacher.service import create_app, serve_in_thread
from scripted_openai import Reply, scripted_openai
from test_teacher_openai import FINAL, VISION, make_item, media, run  # noqa: F401 (media is a fixture)

CONTEXT_400 = Reply(status=400, body=json.dumps({"error": {"message": "This model's maximum context length is "
                                                           "65536 tokens; you requested 70000 (messages + tools)"}}))
NO_TOOLS_400 = Reply(status=400, body='{"error": {"message": "tools are not supported by this model"}}')


# ------------------------------------------------------------------ frames
def test_too_many_timestamps_is_a_named_item_error(media):
    """Old code: 900 timestamps were decoded (here: error_type 'media' after the decode)."""
    item = make_item(media)
    item["timestamps"] = [round(i * 0.004, 3) for i in range(900)]
    result, sent, _ = run(media, [FINAL], item=item)
    assert (result.status, result.error_type) == ("error", "too_many_frames"), result
    assert "900 timestamps exceed the limit of 400" in result.detail and sent == []


def test_frame_cache_is_bounded_in_bytes():
    """Old code: the cache counted entries (32), whatever their size."""
    frame = Image.new("RGB", (100, 100))
    one = tools.frames_bytes([frame])
    assert one == 30_000
    cache = tools._ClipCache(max_bytes=3 * one)
    for k in range(5):
        assert len(cache.get_or_load(("clip", k), lambda: [frame])) == 1
    assert cache.bytes == 3 * one and len(cache) == 3
    huge = cache.get_or_load(("huge",), lambda: [frame] * 4)  # larger than the whole budget: not kept
    assert len(huge) == 4 and cache.bytes <= 3 * one and ("huge",) not in cache._data


# ------------------------------------------------------------------ protocol
def test_one_400_does_not_switch_the_protocol(media):
    """Old code: one context-length 400 switched every later item to the text protocol."""
    def script(body: dict, index: int) -> Reply:
        return CONTEXT_400 if "long-case" in json.dumps(body["messages"][1]["content"]) else FINAL

    with scripted_openai(script) as (base_url, upstream):
        backend = OpenAITeacher(OpenAITeacherConfig(base_url=base_url, model=upstream.model, vision=VISION,
                                                    sdk_max_retries=0))
        app = create_app(backend, str(media["root"]), cache_size=0)
        long_item = make_item(media, sid="long")
        long_item["question"] = "long-case: which moves first?"
        with serve_in_thread(app) as url:
            first = requests.post(f"{url}/patch", json={"items": [long_item]}, timeout=30).json()
            second = requests.post(f"{url}/patch", json={"items": [make_item(media)]}, timeout=30).json()
        sent = list(upstream.requests)
    long_result = PatchResponse.model_validate(first).results[0]
    assert (long_result.status, long_result.error_type) == ("error", "api_http_400")
    assert PatchResponse.model_validate(second).results[0].status == "ok"
    assert backend.protocol == "tools" and len(sent) == 2 and all("tools" in body for body in sent)


def test_refusal_naming_tools_switches_and_the_cache_follows_the_protocol(media):
    """Old code: the cache namespace stayed that of native tools, so a patch made one way answered for the other."""
    def script(body: dict, index: int) -> Reply:
        if index == 0:
            return FINAL  # the first item: native tools work
        return NO_TOOLS_400 if "tools" in body else FINAL

    with scripted_openai(script) as (base_url, upstream):
        backend = OpenAITeacher(OpenAITeacherConfig(base_url=base_url, model=upstream.model, vision=VISION,
                                                    sdk_max_retries=0))
        before = backend.cache_namespace
        app = create_app(backend, str(media["root"]))
        other = make_item(media, sid="other", response="<answer>A</answer> but not sure")
        with serve_in_thread(app) as url:
            statuses = []
            for item in (make_item(media), other, make_item(media)):
                resp = requests.post(f"{url}/patch", json={"items": [item]}, timeout=30).json()
                result = PatchResponse.model_validate(resp).results[0]
                statuses.append((result.status, result.latency_s > 0))
        calls = len(upstream.requests)
    assert backend.protocol == "text" and backend.cache_namespace != before
    assert statuses == [("ok", True), ("ok", True), ("ok", True)]  # the third is asked again, not a hit
    assert calls == 1 + 2 + 1


# ------------------------------------------------------------------ odds and ends
def test_api_docs_are_not_served(media):
    """Old code: /docs, /redoc and /openapi.json answered 200 without the key."""
    app = create_app(AnnotationBackend(), str(media["root"]), api_key="service-key-123")
    with serve_in_thread(app) as url:
        codes = {path: requests.get(f"{url}{path}", timeout=5).status_code
                 for path in ("/docs", "/redoc", "/openapi.json")}
        authorised = requests.get(f"{url}/openapi.json", headers={"Authorization": "Bearer service-key-123"},
                                  timeout=5).status_code
    assert codes == {"/docs": 404, "/redoc": 404, "/openapi.json": 404} and authorised == 404


class Served(Exception):
    """Raised in place of starting uvicorn: main got as far as serving."""


@pytest.fixture
def no_serving(monkeypatch):
    def fake_run(app, **kwargs):
        raise Served(kwargs.get("host"))
    monkeypatch.setattr(service_module.uvicorn, "run", fake_run)


def test_non_loopback_bind_needs_a_key_or_an_explicit_flag(no_serving, tmp_path):
    """Old code: binding 0.0.0.0 without a key only logged a warning and served."""
    base = ["--allowed-root", str(tmp_path), "--host", "0.0.0.0", "--log-level", "warning"]
    with pytest.raises(SystemExit, match="--insecure-no-key"):
        service_module.main(base)
    with pytest.raises(Served):
        service_module.main([*base, "--insecure-no-key"])
    key = tmp_path / "service.key"
    key.write_text("service-key-456\n")
    with pytest.raises(Served):
        service_module.main([*base, "--api-key-file", str(key)])
    with pytest.raises(Served):
        service_module.main(["--allowed-root", str(tmp_path), "--log-level", "warning"])  # loopback: no key needed


def test_running_the_server_module_is_an_error_not_a_silent_success():
    """Old code: `python -m ffr.teacher.server` exited 0 having done nothing."""
    import ffr

    src = Path(ffr.__file__).resolve().parents[1]  # the code under test, wherever it was imported from
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "ffr.teacher.server"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and "python -m ffr.teacher.service" in proc.stderr


def test_response_format_is_dropped_only_when_it_is_refused(media):
    """Old code: any 400 on a request carrying response_format turned it off for every later item."""
    refused = Reply(status=400, body='{"error": {"message": "response_format json_schema is not supported"}}')

    def script(body: dict, index: int) -> Reply:
        if "long-case" in json.dumps(body["messages"][1]["content"]):
            return CONTEXT_400
        return refused if "response_format" in body and index >= 2 else FINAL

    long_item = make_item(media, sid="long")
    long_item["question"] = "long-case: which moves first?"
    with scripted_openai(script) as (base_url, upstream):
        backend = OpenAITeacher(OpenAITeacherConfig(base_url=base_url, model=upstream.model, vision=VISION,
                                                    sdk_max_retries=0, protocol="tools", max_turns=1))
        app = create_app(backend, str(media["root"]), cache_size=0)
        with serve_in_thread(app) as url:
            outcomes = []
            for item in (long_item, make_item(media), make_item(media, sid="again")):
                resp = requests.post(f"{url}/patch", json={"items": [item]}, timeout=30).json()
                result = PatchResponse.model_validate(resp).results[0]
                outcomes.append((result.status, result.error_type, backend.json_mode))
    assert outcomes == [("error", "api_http_400", "auto"), ("ok", None, "auto"), ("ok", None, "off")]
