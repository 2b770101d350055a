"""The teacher service as a process, under a mix of misbehaving upstream replies at once.

A scripted upstream answers each item by a marker in its question: 40,000 unclosed
``<think>`` tags, 4 MB of ``{}``, a 300 MB streamed reply, a 401 and a 400 that echo the
upstream key, junk usage counts, a non-JSON 200, a good patch; one more item carries 900
timestamps. While two such batches run, /health must answer within HEALTH_BOUND_S every time; the
service's peak RSS (VmHWM) must stay within `RSS_BOUND_MB` of its RSS once ready; every item
ends with its named status within the item timeout; and neither key (the upstream's, the
service's own) appears in a response, the log or the cache file.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import requests

from scripted_openai import Reply, scripted_openai
from serving import wait_for_port_file, wait_until_up
from test_teacher_bad_replies import BRACES, HEALTH_BOUND_S, THINK_FLOOD, HealthProbe
from test_teacher_openai import FINAL, make_item, media  # noqa: F401 (media is a fixture)

RSS_BOUND_MB = 200  # peak RSS growth over the ready service, for two batches of every fault
UPSTREAM_KEY = "sk-mixed-UPSTREAM-0004"
SERVICE_KEY = "svc-mixed-SERVICE-0005"
ITEM_TIMEOUT_S = 15.0
EXPECTED = {
    "think": ("error", "no_json"),
    "braces": ("error", "reply_too_large"),
    "huge": ("error", "reply_too_large"),
    "auth": ("error", "api_auth"),
    "bad400": ("error", "api_http_400"),
    "usage": ("ok", None),
    "html": ("error", "upstream_bad_reply"),
    "plain": ("ok", None),
    "frames": ("error", "too_many_frames"),
}
REPLIES = {
    "think": Reply(content=THINK_FLOOD),
    "braces": Reply(content=BRACES),
    "huge": Reply(content="x", filler=300 << 20),
    "auth": Reply(status=401, body=json.dumps({"error": {"message": f"Incorrect API key provided: Bearer "
                                                                    f"{UPSTREAM_KEY}"}})),
    "bad400": Reply(status=400, body=json.dumps({"error": {"message": f"invalid request for {UPSTREAM_KEY}"}})),
    "usage": Reply(content=FINAL.content, usage=("many", None)),
    "html": Reply(body="<html>bad gateway</html>"),
}


def script(body: dict, index: int) -> Reply:
    text = json.dumps(body["messages"][1]["content"])
    return next((r for marker, r in REPLIES.items() if f"{marker}-case" in text), FINAL)


def items(media, batch: int) -> list[dict]:
    out = []
    for marker in EXPECTED:
        item = make_item(media, sid=f"{marker}-{batch}")
        item["question"] = f"{marker}-case {batch}: which moves first?"
        if marker == "frames":
            item["timestamps"] = [i * 0.004 for i in range(900)]
        out.append(item)
    return out


def rss_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def test_mixed_misbehaving_upstream(media, tmp_path):
    import ffr

    (tmp_path / "upstream.key").write_text(UPSTREAM_KEY)
    (tmp_path / "service.key").write_text(SERVICE_KEY)
    cache, log = tmp_path / "cache.jsonl", tmp_path / "service.log"
    src = Path(ffr.__file__).resolve().parents[1]  # the code under test
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    auth = {"Authorization": f"Bearer {SERVICE_KEY}"}
    with scripted_openai(script) as (base_url, upstream), open(log, "w") as log_fh:
        port_file = tmp_path / "port"
        proc = subprocess.Popen(
            [sys.executable, "-m", "ffr.teacher.service", "--backend", "openai", "--base-url", base_url,
             "--model", upstream.model, "--port", "0", "--port-file", str(port_file),  # the service picks the port
             "--allowed-root", str(media["root"]),
             "--api-key-file", str(tmp_path / "service.key"), "--upstream-api-key-file", str(tmp_path / "upstream.key"),
             "--cache-file", str(cache), "--item-timeout-s", str(ITEM_TIMEOUT_S), "--sdk-max-retries", "0",
             "--fps", "2", "--min-frames", "4", "--max-frames", "8", "--video-min-pixels", str(56 * 56),
             "--video-max-pixels", str(56 * 56), "--log-level", "debug"],
            env=env, stdout=log_fh, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{wait_for_port_file(proc, port_file, what='teacher service')}"
            wait_until_up(proc, f"{url}/health", what="teacher service")
            assert requests.get(f"{url}/ready", headers=auth, timeout=15).status_code == 200
            ready = rss_mb(proc.pid)
            responses: dict[int, requests.Response] = {}

            def send(batch: int) -> None:
                responses[batch] = requests.post(f"{url}/patch", json={"items": items(media, batch)}, headers=auth,
                                                 timeout=ITEM_TIMEOUT_S + 30)

            with HealthProbe(url) as probe:
                senders = [threading.Thread(target=send, args=(b,)) for b in (0, 1)]
                for t in senders:
                    t.start()
                for t in senders:
                    t.join(timeout=ITEM_TIMEOUT_S + 40)
            peak = rss_mb(proc.pid)
            stats = requests.get(f"{url}/stats", headers=auth, timeout=5).text
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # a service stuck on its event loop ignores SIGTERM
                proc.kill()
                proc.wait(timeout=30)
    growth = peak["VmHWM"] - ready["VmRSS"]
    assert probe.count > 5 and probe.worst_s < HEALTH_BOUND_S, f"/health took {probe.worst_s:.2f}s"
    assert growth < RSS_BOUND_MB, f"peak RSS {peak['VmHWM']:.0f} MB, {growth:.0f} MB over the ready service"
    for batch, resp in responses.items():
        assert resp.status_code == 200, resp.text
        results = {r["sample_id"]: r for r in resp.json()["results"]}
        got = {m: (results[f"{m}-{batch}"]["status"], results[f"{m}-{batch}"]["error_type"]) for m in EXPECTED}
        assert got == EXPECTED
        assert all(r["latency_s"] < ITEM_TIMEOUT_S for r in results.values())
    written = {"responses": "".join(r.text for r in responses.values()), "stats": stats, "log": log.read_text(),
               "cache file": cache.read_text()}
    for where, text in written.items():
        for key in (UPSTREAM_KEY, SERVICE_KEY):
            assert key not in text, f"a configured key leaked into the {where}"
    assert "[REDACTED]" in written["responses"] and "usage.prompt_tokens is 'many'" in written["log"]
