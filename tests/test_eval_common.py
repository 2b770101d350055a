"""Shared evaluation pieces: registry, base helpers, the judge client, the fixtures writer."""
from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import av
import pytest

from eval import registry
from eval.benchmarks import base, mmvu
from eval.benchmarks.base import EvalSample, LoadError
from eval.fixtures import N_FRAMES, write_fixtures
from eval.judge import JudgeError, OpenAIJudge

# Video-R1 eval prompt, rendered from its code (BENCHMARKS.md §1.4).
R1_THINK = (
    "\nPlease think about this question as if you were a human pondering deeply. Engage in an internal dialogue "
    "using expressions such as 'let me think', 'wait', 'Hmm', 'oh, I see', 'let's break it down', etc, or other "
    "natural language thought expressions It's encouraged to include self-reflection or verification in the "
    "reasoning process. Provide your detailed reasoning between the <think> and </think> tags, and then give "
    "your final answer between the <answer> and </answer> tags.")
R1_MC = " Please provide only the single option letter (e.g., A, B, C, D, etc.) within the <answer> </answer> tags."


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return write_fixtures(str(tmp_path_factory.mktemp("fx")))


def test_registry_lists_the_eight_benchmarks_and_rejects_unknown_names():
    assert list(registry.BENCHMARKS) == ["mmvu", "vsibench", "videommmu", "videoholmes", "longvideobench",
                                         "lvbench", "mvbench", "tempcompass"]
    assert registry.get_benchmark("mvbench").NAME == "mvbench"
    with pytest.raises(ValueError, match="known: .*'lvbench'"):
        registry.get_benchmark("mvbench2")


@pytest.mark.parametrize("name", list(registry.BENCHMARKS))
def test_every_module_exposes_the_interface(name):
    mod = registry.get_benchmark(name)
    assert mod.NAME == name
    assert mod.SUBSETS is None or (isinstance(mod.SUBSETS, list) and mod.SUBSETS)
    for fn in ("load", "load_records", "build_prompt", "score", "aggregate"):
        assert callable(getattr(mod, fn))
    with pytest.raises(ValueError, match="unknown protocol"):
        mod.aggregate([], protocol="lmms")
    with pytest.raises(ValueError, match="unknown format"):
        mod.load_records([], fmt="parquet")
    with pytest.raises(ValueError, match="unknown subset"):
        mod.load_records([], subset="no-such-subset")


def test_options_helpers():
    assert base.render_options(["red", "blue"]) == ["A. red", "B. blue"]
    assert base.option_text("C. 3.5 m") == "3.5 m"
    assert base.option_text("Caption A: x") == "Caption A: x"
    s = EvalSample("1", "x", None, "video", "q", ["A. red", "B. blue"], "B", base.MC)
    assert base.option_map(s) == {"A": "red", "B": "blue"}


def test_resolve_media_joins_relative_paths_only():
    assert base.resolve_media("videos/a.mp4", "/data/b") == "/data/b/videos/a.mp4"
    assert base.resolve_media("/abs/a.mp4", "/data/b") == "/abs/a.mp4"
    assert base.resolve_media("videos/a.mp4", None) == "videos/a.mp4"
    assert base.resolve_media("", "/data") is None


def test_r1_prompt_snapshot_matches_video_r1_rendering():
    s = EvalSample("1", "mmvu", None, "video", "Which process is shown in the animation?",
                   ["A. Isothermal compression", "B. Adiabatic compression"], "A", base.MC)
    assert mmvu.build_prompt(s) == ("Which process is shown in the animation?Options:\nA. Isothermal compression\n"
                                    "B. Adiabatic compression\n" + R1_THINK + R1_MC)


def test_video_r1_records_take_gold_from_the_answer_tag_and_report_bad_ones_by_id():
    good = {"problem_id": 7, "problem": "q", "data_type": "video", "problem_type": "multiple choice",
            "options": ["A. x", "B. y"], "solution": "<answer> B </answer>", "path": "v/7.mp4"}
    s = base.video_r1_sample("b", good, "/r")
    assert (s.id, s.answer, s.media_path, s.options) == ("7", "B", "/r/v/7.mp4", ["A. x", "B. y"])
    bad = [{**good, "problem_id": 8, "solution": "<answer></answer>"},
           {**{k: v for k, v in good.items() if k != "path"}, "problem_id": 9}]
    with pytest.raises(LoadError) as err:
        base.records_or_raise("b", bad, lambda r, i: [base.video_r1_sample("b", r, None)], base.video_r1_id)
    assert [i for i, _ in err.value.problems] == ["8", "9"]
    assert "empty gold answer" in err.value.problems[0][1] and "'path'" in err.value.problems[1][1]


def test_finish_load_policies(tmp_path):
    (tmp_path / "ok.mp4").write_bytes(b"x")

    def make():
        return [EvalSample("a", "b", str(tmp_path / "ok.mp4"), "video", "q", [], "1", "numerical"),
                EvalSample("b", "b", str(tmp_path / "gone.mp4"), "video", "q", [], "1", "numerical")]
    with pytest.raises(LoadError, match="b: missing video file") as err:
        base.finish_load("b", make(), [("c", "malformed record: KeyError")], "raise")
    assert [i for i, _ in err.value.problems] == ["c", "b"]
    assert [s.id for s in base.finish_load("b", make(), [], "skip")] == ["a"]
    kept = base.finish_load("b", make(), [], "keep")
    assert [s.media_path is None for s in kept] == [False, True]
    with pytest.raises(ValueError, match="on_error"):
        base.finish_load("b", make(), [], "ignore")


def test_micro_aggregate_counts_unjudged_separately():
    rows = [{"id": "1", "score": 1.0, "categories": {"g": "x"}}, {"id": "2", "score": 0.0, "categories": {"g": "y"}},
            {"id": "3", "score": None, "categories": {"g": "y"}}, {"id": "4", "score": 1.0, "categories": {}}]
    out = base.micro_aggregate(rows, ("g", "absent"))
    assert out == {"overall": pytest.approx(200 / 3), "n": 3, "n_unjudged": 1,
                   "categories": {"g": {"x": 100.0, "y": 0.0}}}
    assert base.micro_aggregate([], ("g",))["overall"] == 0.0


# ---------------------------------------------------------------- judge client
class _FakeChat(BaseHTTPRequestHandler):
    script: list = []   # [(status, body)], consumed per request
    seen: list = []

    def do_POST(self):  # noqa: N802 (http.server naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        status, reply = type(self).script.pop(0)
        data = reply.encode() if isinstance(reply, str) else json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def chat_server():
    _FakeChat.script, _FakeChat.seen = [], []
    server = HTTPServer(("127.0.0.1", 0), _FakeChat)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()


def _completion(text):
    return {"choices": [{"message": {"role": "assistant", "content": text}}]}


def test_judge_posts_chat_completions_and_returns_the_text(chat_server):
    _FakeChat.script = [(200, _completion('{"correct": true}'))]
    judge = OpenAIJudge(chat_server, "judge-model", api_key="k123", backoff_s=0.0)
    msgs = [{"role": "user", "content": "hi"}]
    assert judge.complete(msgs, max_tokens=7, json_mode=True) == '{"correct": true}'
    seen = _FakeChat.seen[0]
    assert seen["path"] == "/v1/chat/completions" and seen["auth"] == "Bearer k123"
    assert seen["body"] == {"model": "judge-model", "messages": msgs, "max_tokens": 7, "temperature": 0.0,
                            "response_format": {"type": "json_object"}}
    assert judge.n_calls == 1


def test_judge_retries_server_errors_then_succeeds(chat_server):
    _FakeChat.script = [(503, "busy"), (500, "oops"), (200, _completion("Correct"))]
    judge = OpenAIJudge(chat_server, "m", backoff_s=0.0, max_retries=3)
    assert judge.complete([{"role": "user", "content": "x"}], temperature=1.0) == "Correct"
    assert len(_FakeChat.seen) == 3 and _FakeChat.seen[-1]["body"]["temperature"] == 1.0


@pytest.mark.parametrize("status,body,match", [(400, "bad request", "HTTP 400"),
                                               (200, {"choices": []}, "no choices"),
                                               (200, "not json", "no choices")])
def test_judge_failures_raise_judge_error(chat_server, status, body, match):
    _FakeChat.script = [(status, body)]
    with pytest.raises(JudgeError, match=match):
        OpenAIJudge(chat_server, "m", max_retries=0).complete([{"role": "user", "content": "x"}])


def test_judge_unreachable_endpoint_raises():
    with pytest.raises(JudgeError, match="failed"):
        OpenAIJudge("http://127.0.0.1:9/v1", "m", max_retries=0, timeout_s=2).complete([])
    with pytest.raises(ValueError, match="http"):
        OpenAIJudge("localhost:8000", "m")


# ---------------------------------------------------------------- fixtures
def test_fixtures_load_in_both_formats_and_videos_decode(fixtures):
    assert set(fixtures) == set(registry.BENCHMARKS)
    for name, paths in fixtures.items():
        mod = registry.get_benchmark(name)
        assert all(os.path.isfile(p) for p in paths["official"] + paths["videos"])
        official = mod.load(paths["root"])
        assert official and all(base.media_exists(s) for s in official)
        if paths["video-r1"] is not None:
            assert mod.load(paths["root"], fmt="video-r1")
    assert fixtures["lvbench"]["video-r1"] is None
    with av.open(fixtures["mmvu"]["videos"][0]) as container:
        assert sum(1 for _ in container.decode(video=0)) == N_FRAMES
    with pytest.raises(ValueError, match="unknown fixture"):
        write_fixtures(os.path.dirname(fixtures["mmvu"]["root"]), names=["nope"])
