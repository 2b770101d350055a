"""Configured keys never leave a process: not in an item's detail, a log line, the cache file,
``ffr.mine``'s patch log or ``r1v.teacher_traces``' attempts log, even when an upstream echoes
them (``Incorrect API key provided: Bearer sk-...``)."""
from __future__ import annotations

import json
import logging

import pytest
import requests
from fastapi import FastAPI, Request

from ffr.mine import main as mine_main
from ffr.teacher.openai_backend import OpenAITeacher, OpenAITeacherConfig
from ffr.teacher.schema import PatchResponse
from ffr.teacher.service import create_app, serve_in_thread
from r1v.teacher_traces import run as traces_run
from scripted_openai import Reply, scripted_openai
from test_mine import argv as mine_argv
from test_mine import dumps  # noqa: F401 (a fixture)
from test_mine import run as run_cli
from test_teacher_openai import FINAL, VISION, make_item, media  # noqa: F401 (media is a fixture)
from test_teacher_traces import args_for, data  # noqa: F401 (data is a fixture)

MASK = "[REDACTED]"
UPSTREAM_KEY = "sk-upstream-SECRET-0001"
ECHO_401 = Reply(status=401, body=json.dumps({"error": {"message": f"Incorrect API key provided: Bearer "
                                                                   f"{UPSTREAM_KEY}"}}))
ECHO_400 = Reply(status=400, body=json.dumps({"error": {"message": f"bad request from key {UPSTREAM_KEY}"}}))


def test_redact_and_the_log_filter():
    from ffr.redact import RedactingFilter, redact, register_secret

    register_secret("sk-unit-SECRET-42")
    register_secret("short")  # too short to redact safely: ignored
    assert redact("Bearer sk-unit-SECRET-42 and short") == f"Bearer {MASK} and short"
    assert redact(None) is None and redact("") == ""
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "key %s failed", ("sk-unit-SECRET-42",), None)
    try:
        raise ValueError("echo sk-unit-SECRET-42")
    except ValueError:
        import sys
        record.exc_info = sys.exc_info()
    assert RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "sk-unit-SECRET-42" not in text and text.startswith(f"key {MASK} failed") and f"echo {MASK}" in text


def test_upstream_key_never_leaves_the_service(media, tmp_path, caplog):
    """Old code: the 401's echoed bearer landed in the item's detail (and the 400's in a warning)."""
    def script(body: dict, index: int) -> Reply:
        text = json.dumps(body["messages"][1]["content"])
        return ECHO_401 if "auth-case" in text else ECHO_400 if "bad-case" in text else FINAL

    cache_file = tmp_path / "cache.jsonl"
    items = [make_item(media, sid=sid) for sid in ("auth", "bad", "good")]
    items[0]["question"], items[1]["question"] = "auth-case: which?", "bad-case: which?"
    with caplog.at_level(logging.DEBUG), scripted_openai(script) as (base_url, upstream):
        cfg = OpenAITeacherConfig(base_url=base_url, model=upstream.model, api_key=UPSTREAM_KEY, vision=VISION,
                                  sdk_max_retries=0)
        app = create_app(OpenAITeacher(cfg), str(media["root"]), cache_file=str(cache_file))
        with serve_in_thread(app) as url:
            resp = requests.post(f"{url}/patch", json={"items": items}, timeout=30)
            stats = requests.get(f"{url}/stats", timeout=5).text
        logging.getLogger("ffr.teacher").warning("upstream said: Bearer %s", UPSTREAM_KEY)  # any later line, too
    results = PatchResponse.model_validate(resp.json()).results
    assert [(r.status, r.error_type) for r in results] == [("error", "api_auth"), ("error", "api_http_400"),
                                                           ("ok", None)]
    assert upstream.auth[0] == f"Bearer {UPSTREAM_KEY}"  # the key is used upstream, only there
    for where, text in {"detail": results[0].detail or "", "response": resp.text, "stats": stats,
                        "logs": caplog.text, "cache file": cache_file.read_text()}.items():
        assert UPSTREAM_KEY not in text, f"the upstream key leaked into the {where}"
    assert MASK in results[0].detail and MASK in results[1].detail and "upstream said: Bearer" in caplog.text


def test_mine_never_writes_its_key(synthetic_dir, dumps, tmp_path):  # noqa: F811
    """Old code: a detail that echoed the bearer was written to the patch log as is."""
    key = "svc-mine-SECRET-0002"

    app = FastAPI()

    @app.post("/patch")
    async def patch(request: Request) -> dict:
        items = (await request.json())["items"]
        echo = request.headers.get("authorization", "")
        return {"results": [{"sample_id": it["sample_id"], "status": "error", "error_type": "backend",
                             "detail": f"proxy says: {echo}"} for it in items]}

    key_file = tmp_path / "service.key"
    key_file.write_text(key + "\n")
    out = tmp_path / "mined.jsonl"
    with serve_in_thread(app) as url:
        code, _ = run_cli(mine_main, mine_argv(url, synthetic_dir, dumps, out, "--api-key-file", str(key_file)))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # Exit 1: every item ended in an error (ffr.mine tells the truth); the key is masked in each.
    assert code == 1 and rows and all(r["detail"] == f"proxy says: Bearer {MASK}" for r in rows)
    assert key not in out.read_text()


def test_teacher_traces_never_writes_its_key(tmp_path, data, caplog):  # noqa: F811
    """Old code: the endpoint's 401 echo went to <out>.attempts.jsonl and the warning log."""
    key = "sk-traces-SECRET-0003"
    key_file = tmp_path / "upstream.key"
    key_file.write_text(key)
    out = tmp_path / "sft.jsonl"
    echo = Reply(status=401, body=json.dumps({"error": {"message": f"Incorrect API key provided: Bearer {key}"}}))
    with caplog.at_level(logging.WARNING), scripted_openai(lambda body, i: echo) as (url, upstream):
        summary = traces_run(args_for(url, data, out, "--api-key-file", str(key_file), "--limit", "2"))
    attempts = (tmp_path / "sft.jsonl.attempts.jsonl").read_text()
    assert summary.by_status == {"http_error": 2} and upstream.auth[0] == f"Bearer {key}"
    assert MASK in attempts and key not in attempts and key not in caplog.text


@pytest.mark.parametrize("secret", [None, "", "EMPTY", "abc"])
def test_placeholders_and_short_strings_are_not_secrets(secret):
    from ffr.redact import redact, register_secret

    register_secret(secret)
    assert redact("EMPTY abc text") == "EMPTY abc text"
