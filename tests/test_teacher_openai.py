"""The `openai` teacher backend against a scripted OpenAI-compatible server, through the real service.

Each scenario scripts the model's replies, posts one item to the teacher service over HTTP,
and checks the item's status and cost fields and what the backend sent (roles, image parts,
tools, response_format).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import requests

from ffr.teacher.openai_backend import OpenAITeacher, OpenAITeacherConfig
from ffr.teacher.schema import PatchRequestItem, PatchResponse, PatchResult
from ffr.teacher.service import create_app, serve_in_thread
from r1v.toy.draw import encode_mp4
from r1v.vision import VisionConfig, load_video
from scripted_openai import Reply, scripted_openai, tool_call

VISION = VisionConfig(fps=2.0, min_frames=4, max_frames=8, video_min_pixels=56 * 56, video_max_pixels=56 * 56)
PATCH = {"error_types": ["temporal"], "key_frames": [2, 4], "temporal_markers": ["when the square starts moving"],
         "spatial_regions": [{"frame": 3, "box": [0.1, 0.2, 0.5, 0.6]}],
         "guidance": "Compare the order of the two events inside the key-frame window."}
LEAKY = dict(PATCH, guidance="The answer is B, the blue square.")
FINAL = Reply(content=json.dumps(PATCH))


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict:
    """root/clip.mp4: 4 s at 8 fps, a square that moves; the student's 8 sampled frame times."""
    root = tmp_path_factory.mktemp("teacher_media")
    frames = np.zeros((32, 64, 64, 3), dtype=np.uint8)
    for f in range(32):
        frames[f, 20:36, 2 * f % 48:2 * f % 48 + 16] = (40, 80, 220)
    encode_mp4(frames, root / "clip.mp4", fps=8)
    clip = load_video(root / "clip.mp4", VISION)
    return {"root": root, "timestamps": clip.timestamps}


def make_item(media, sid: str = "s1", gold: str | None = "A", response: str = "<answer>B</answer>") -> dict:
    return PatchRequestItem(
        sample_id=sid, video_path="clip.mp4", timestamps=media["timestamps"],
        question="Which moves first?Options:\nA. the blue square\nB. the red circle\n",
        options=["A. the blue square", "B. the red circle"], problem_type="multiple choice",
        student_response=response, gold_answer=gold).model_dump(mode="json")


def run(media, script, item=None, timeout_s: float = 20.0, **config) -> tuple[PatchResult, list[dict], dict]:
    """Serve `script`, post one item; returns (result, requests the teacher sent, /stats)."""
    with scripted_openai(script) as (base_url, server):
        cfg = OpenAITeacherConfig(base_url=base_url, model=server.model, vision=VISION, sdk_max_retries=1,
                                  **config)
        app = create_app(OpenAITeacher(cfg), str(media["root"]), item_timeout_s=timeout_s, cache_size=0)
        with serve_in_thread(app) as url:
            resp = requests.post(f"{url}/patch", json={"items": [item or make_item(media)]}, timeout=60)
            stats = requests.get(f"{url}/stats", timeout=5).json()
        assert resp.status_code == 200, resp.text
        return PatchResponse.model_validate(resp.json()).results[0], server.requests, stats


def image_parts(message: dict) -> int:
    content = message.get("content")
    return sum(1 for p in content if p.get("type") == "image_url") if isinstance(content, list) else 0


def test_native_tool_call_then_patch(media):
    result, sent, stats = run(media, [Reply(tool_calls=[tool_call("select_frames", indices=[2, 3])]), FINAL])
    assert result.status == "ok" and result.patch.key_frames.start == 2
    assert (result.turns, result.model_calls, result.tokens_in, result.tokens_out) == (2, 2, 200, 40)
    n = len(media["timestamps"])
    assert result.images == n + 2
    first, second = sent
    assert first["tools"][0]["function"]["name"] == "select_frames" and "response_format" not in first
    assert image_parts(first["messages"][1]) == n
    roles = [m["role"] for m in second["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    tool_msg, images_msg = second["messages"][3], second["messages"][4]
    assert isinstance(tool_msg["content"], str) and "Frames 2, 3" in tool_msg["content"]  # tool messages: text only
    assert image_parts(images_msg) == 2  # the frames come back in a user message
    assert result.teacher_model == "scripted-teacher" and result.prompt_version.startswith("ffr-teacher-")
    assert stats["cost"]["tokens_in"] == 200 and stats["status"]["ok"] == 1


def test_arguments_as_object_and_multi_turn(media):
    script = [Reply(tool_calls=[tool_call("select_time_range", start_s=0.5, end_s=2.0, n=3)]),
              Reply(tool_calls=[("zoom", ("object", {"frame_index": 3, "bbox": [100, 250, 600, 700]}))]),
              FINAL]
    result, sent, _ = run(media, script)
    assert result.status == "ok" and result.turns == 3
    assert result.images == len(media["timestamps"]) + 3 + 1
    zoom_result = sent[2]["messages"][-2]["content"]
    assert zoom_result.startswith("Zoom on frame 3")  # a 0-1000 box was read on the 0-1000 grid


def test_text_action_protocol(media):
    script = [Reply(content='Let me look. ACTION: {"tool": "select_frames", "arguments": {"indices": [1, 2]}}'),
              FINAL]
    result, sent, _ = run(media, script, protocol="text")
    assert result.status == "ok" and result.turns == 2
    assert all("tools" not in body for body in sent)
    last = sent[1]["messages"]
    assert [m["role"] for m in last[-2:]] == ["assistant", "user"]
    assert last[-1]["content"][0]["text"].startswith("Observation:") and image_parts(last[-1]) == 2
    assert "ACTION:" in sent[0]["messages"][0]["content"]


def test_malformed_arguments_get_an_execution_error_and_count(media):
    script = [Reply(tool_calls=[("select_frames", '{"indices": [1, 2')]),
              Reply(tool_calls=[tool_call("select_frames", indices=[99])]), FINAL]
    result, sent, _ = run(media, script, max_turns=4)
    assert result.status == "ok" and result.turns == 3
    errors = [m["content"] for body in sent[1:] for m in body["messages"] if m["role"] == "tool"]
    assert errors[0].startswith("Execution error") and "out of range" in errors[-1]


def test_budget_spent_forces_the_final_answer(media):
    calls = Reply(tool_calls=[tool_call("select_frames", indices=[0, 1])])
    result, sent, _ = run(media, [calls, calls, FINAL], max_turns=3)
    assert result.status == "ok" and result.turns == 3
    assert "tools" not in sent[2] and sent[2]["response_format"]["type"] == "json_schema"


def test_reasoning_only_reply_is_reasked_once(media):
    ok, sent, _ = run(media, [Reply(content="", reasoning="The student missed the order."), FINAL])
    assert ok.status == "ok" and ok.turns == 2
    assert "not a valid patch" in sent[1]["messages"][-1]["content"]
    bad, _, _ = run(media, [Reply(content="", reasoning="thinking only")])
    assert (bad.status, bad.error_type, bad.turns) == ("error", "reasoning_only", 2)


def test_tags_and_0_1000_boxes(media):
    glm = dict(PATCH, spatial_regions=[{"frame": 3, "bbox_2d": [100, 200, 500, 600]}], error_types=["spatial_error"])
    text = "<think>where is it</think><|begin_of_box|>" + json.dumps(glm) + "<|end_of_box|>"
    result, _, _ = run(media, [Reply(content=text)], protocol="text")
    assert result.status == "ok" and result.patch.error_types == ["spatial"]
    region = result.patch.spatial_regions[0]
    assert region.coords == "relative" and region.box == pytest.approx((0.1, 0.2, 0.5, 0.6))


def test_malformed_final_json_names_the_error(media):
    result, _, _ = run(media, [Reply(content='{"error_types": ["temporal"], "guidance": '), Reply(content="no idea")])
    assert (result.status, result.error_type) == ("error", "no_json")
    invalid, _, _ = run(media, [Reply(content='{"error_types": ["colour"], "guidance": "x"}')])
    assert (invalid.status, invalid.error_type) == ("error", "invalid_patch")


def test_leaky_patch_is_regenerated_once(media):
    result, sent, stats = run(media, [Reply(content=json.dumps(LEAKY)), FINAL])
    assert result.status == "ok" and result.regenerated == 1
    feedback = sent[1]["messages"][-1]["content"]
    assert "reveals the answer" in feedback and "The answer is B, the blue square." in feedback
    dropped, _, stats = run(media, [Reply(content=json.dumps(LEAKY))])
    assert (dropped.status, dropped.regenerated, dropped.leak_source) == ("leak", 1, "gate")
    assert dropped.patch_error_types == ["temporal"] and stats["leaks_by_error_type"] == {"temporal": 1}


def test_slow_server_times_out(media):
    result, _, _ = run(media, [Reply(content=json.dumps(PATCH), delay_s=3.0)], timeout_s=1.0)
    assert (result.status, result.error_type) == ("timeout", "item_timeout")


def test_5xx_then_success_and_auth_errors(media):
    result, sent, _ = run(media, [Reply(status=503), FINAL])
    assert result.status == "ok" and len(sent) == 2  # the SDK's own retry
    denied, _, _ = run(media, [Reply(status=401, body='{"error": "bad key"}')])
    assert (denied.status, denied.error_type) == ("error", "api_auth")


def test_auto_protocol_falls_back_to_text_when_tools_are_refused(media):
    def script(body: dict, index: int) -> Reply:
        if "tools" in body:
            return Reply(status=400, body='{"error": {"message": "tools are not supported"}}')
        return FINAL

    result, sent, _ = run(media, script)
    assert result.status == "ok"
    assert "tools" in sent[0] and "tools" not in sent[-1] and "ACTION:" in sent[-1]["messages"][0]["content"]


def test_no_gt_mode_never_shows_the_answer(media):
    result, sent, _ = run(media, [FINAL], item=make_item(media, gold=None))
    assert result.status == "ok"
    text = json.dumps(sent[0]["messages"])
    assert "Reference answer" not in text and "NOT given the reference answer" in text


def test_missing_video_frames_are_a_named_error(media, tmp_path):
    (media["root"] / "broken.mp4").write_bytes(b"not a video")
    item = make_item(media)
    item["video_path"] = "broken.mp4"
    result, sent, _ = run(media, [FINAL], item=item)
    assert (result.status, result.error_type) == ("error", "media") and sent == []


def test_image_item_is_one_frame(media):
    from PIL import Image

    Image.new("RGB", (64, 48), (10, 200, 30)).save(media["root"] / "still.png")
    item = make_item(media)
    item.update(video_path="still.png", timestamps=[])
    result, sent, _ = run(media, [FINAL], item=item)
    assert result.status == "ok" and result.patch.key_frames is None
    assert image_parts(sent[0]["messages"][1]) == 1


def test_ready_checks_the_endpoint(media):
    with scripted_openai([FINAL]) as (base_url, server):
        assert OpenAITeacher(OpenAITeacherConfig(base_url=base_url, model=server.model)).ready()
    assert not OpenAITeacher(OpenAITeacherConfig(base_url="http://127.0.0.1:9/v1", model="m")).ready()


def test_cache_namespace_follows_model_and_prompt():
    a = OpenAITeacher(OpenAITeacherConfig(base_url="http://x/v1", model="glm-4.5v"))
    b = OpenAITeacher(OpenAITeacherConfig(base_url="http://x/v1", model="qwen3-vl-32b"))
    assert a.cache_namespace != b.cache_namespace and a.cache_namespace.startswith("openai:")


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="protocol"):
        OpenAITeacherConfig(base_url="http://x/v1", model="m", protocol="smoke")


def test_judge_catches_a_paraphrase_leak_and_the_regeneration_is_judged_again(media):
    """A patch the rule gates pass but the blind judge answers from: regenerated, judged again."""
    import openai

    from ffr.teacher.judge import BlindJudge

    hinting = dict(PATCH, guidance="Check which of the two moves first inside the window.")

    def judge_script(body: dict, index: int) -> Reply:
        text = json.dumps(body["messages"])
        return Reply(content="A" if "of the two moves first" in text else "B", usage=(30, 1))

    with scripted_openai(judge_script, model="judge") as (judge_url, judge_server):
        judge = BlindJudge(openai.AsyncOpenAI(base_url=judge_url, api_key="k"), "judge", samples=3)
        with scripted_openai([Reply(content=json.dumps(hinting)), FINAL]) as (base_url, server):
            cfg = OpenAITeacherConfig(base_url=base_url, model=server.model, vision=VISION, sdk_max_retries=0)
            app = create_app(OpenAITeacher(cfg), str(media["root"]), judge=judge, cache_size=0)
            with serve_in_thread(app) as url:
                resp = requests.post(f"{url}/patch", json={"items": [make_item(media)]}, timeout=60)
                stats = requests.get(f"{url}/stats", timeout=5).json()
    result = PatchResponse.model_validate(resp.json()).results[0]
    assert result.status == "ok" and result.regenerated == 1
    assert result.patch.guidance == PATCH["guidance"]
    assert len(judge_server.requests) == 12  # 2 x 3 samples per judged patch, two patches
    assert result.model_calls == 2 + 12 and result.tokens_in == 200 + 12 * 30
    assert "blind judge" in server.requests[1]["messages"][-1]["content"]  # the judge's reason was quoted back
    assert stats["leaks_by_source"] == {} and stats["cost"]["regenerated"] == 1


def test_serve_script_runs_the_model_backend(media, tmp_path):
    """`TEACHER=vllm local_scripts/serve_teacher.sh` against the scripted endpoint, key from a file, judge on."""
    import os
    import subprocess
    import sys

    from serving import wait_for_port_file, wait_until_up

    repo = Path(__file__).resolve().parents[1]
    key = tmp_path / "upstream.key"
    key.write_text("sk-test\n")
    judge_reply = Reply(content="B")
    with scripted_openai(lambda body, i: FINAL if body["model"] == "scripted-teacher" else judge_reply) as (base, srv):
        port_file = tmp_path / "port"
        env = {**os.environ, "PYTHON": sys.executable, "TEACHER": "vllm", "TEACHER_PORT": "0",
               "TEACHER_ALLOWED_ROOT": str(media["root"]), "TEACHER_BASE_URL": base,
               "TEACHER_MODEL": "scripted-teacher", "TEACHER_UPSTREAM_KEY_FILE": str(key), "JUDGE_MODEL": "judge"}
        proc = subprocess.Popen(["bash", str(repo / "local_scripts" / "serve_teacher.sh"), "--log-level", "warning",
                                 "--max-frames", "8", "--video-min-pixels", str(56 * 56),
                                 "--video-max-pixels", str(56 * 56), "--port-file", str(port_file)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            url = f"http://127.0.0.1:{wait_for_port_file(proc, port_file, what='teacher service')}"
            wait_until_up(proc, f"{url}/health", what="teacher service")
            assert requests.get(f"{url}/ready", timeout=15).json() == {"ready": True, "backend": "openai"}
            resp = requests.post(f"{url}/patch", json={"items": [make_item(media)]}, timeout=60)
        finally:
            proc.terminate()
            proc.communicate(timeout=20)
        models, auth = [r["model"] for r in srv.requests], set(srv.auth)
    result = PatchResponse.model_validate(resp.json()).results[0]
    assert result.status == "ok" and result.model_calls == 1 + 6  # the patch, then 2 x 3 judge samples
    assert models.count("scripted-teacher") == 1 and models.count("judge") == 6
    assert auth == {"Bearer sk-test"}  # the upstream key from its file, for the teacher and the judge
