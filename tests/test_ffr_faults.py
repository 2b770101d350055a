"""Teacher faults mid-run (down, slow, HTTP 500, garbage): every step completes, the fault is counted
in teacher/errors/*, and no rollout is patched on that step; the teacher's recovery is picked up.
A teacher that refuses the key stops the run at start; one that fails round after round stops it
after teacher_max_failed_steps rounds (or only warns, in warn mode)."""
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from transformers import TrainerCallback

from ffr.teacher.backends import AnnotationBackend
from ffr.teacher_health import TeacherUnavailableError
from ffr.teacher.schema import PatchRequestItem, PatchResponse, PatchResult
from ffr.train import FFRGRPOConfig
from ffr.trainer import FFRTrainer
from r1v.data import load_records
from r1v.trainer.callbacks import JsonlLogCallback
from r1v.vision import VisionConfig

# Mode of the teacher during each training step, and the client error kind it must produce.
SCHEDULE = ["ok", "down", "slow", "http500", "garbage", "ok"]
ERROR_KIND = {"down": "connection", "slow": "call_timeout", "http500": "http_5xx", "garbage": "bad_json"}
# The client's call timeout: an "ok" round (8 items) must be answered within it on a loaded 2-core
# machine (0.5 s left little room), and a "slow" round is cut by it.
TIMEOUT_S = 2.0


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        code = {"unauthorized": 401, "forbidden": 403, "starting": 503}.get(self.server.mode, 200)
        self._reply(code, b'{"ready": true}' if code == 200 else b'{"detail": "scripted"}')

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        mode = self.server.mode
        if mode == "slow":  # answers only after the test ends: the client's timeout must cut it
            self.server.release.wait(timeout=120)
        if mode == "http500":
            return self._reply(500, b'{"detail": "internal error"}')
        if mode == "garbage":
            return self._reply(200, b"\x00<html>not json at all")
        backend = AnnotationBackend()
        results = [PatchResult(sample_id=it["sample_id"], status="ok", patch=backend.propose(PatchRequestItem(**it)))
                   for it in body["items"]]
        self._reply(200, PatchResponse(results=results).model_dump_json().encode())

    def _reply(self, code, payload):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class FaultyTeacher:
    """A local teacher whose behaviour is switched by the test; 'down' closes its port."""

    def __init__(self):
        self.server = None
        self.release = threading.Event()  # set when the test ends: frees handlers held in "slow" mode
        self.port = self._start(0)

    def _start(self, port: int) -> int:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.server.daemon_threads = True
        self.server.mode = "ok"
        self.server.release = self.release
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.server.server_address[1]

    def set_mode(self, mode: str) -> None:
        if mode == "down" and self.server is not None:
            self.stop()
        elif mode != "down":
            if self.server is None:
                self._start(self.port)
            self.server.mode = mode

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.server = None


class ScheduleCallback(TrainerCallback):
    def __init__(self, teacher: FaultyTeacher):
        self.teacher = teacher

    def on_step_begin(self, args, state, control, **kwargs):
        self.teacher.set_mode(SCHEDULE[state.global_step])


@pytest.fixture
def faulty_teacher():
    teacher = FaultyTeacher()
    yield teacher
    teacher.release.set()
    if teacher.server is not None:
        teacher.stop()


def test_teacher_faults_mid_run_mean_no_patch(tiny_qwen25_ckpt, synthetic_dir, tmp_path, faulty_teacher):
    records = [r for r in load_records(synthetic_dir / "train.jsonl") if r["data_type"] == "video"]
    args = FFRGRPOConfig(
        output_dir=str(tmp_path / "out"), num_generations=4, max_completion_length=8, per_device_train_batch_size=2,
        max_steps=len(SCHEDULE), logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, seed=0,
        dataloader_num_workers=0, log_completions=False, ffr_enable=True, ffr_patch_log=True,
        teacher_url=f"http://127.0.0.1:{faulty_teacher.port}", teacher_timeout_s=TIMEOUT_S,
        teacher_step_deadline_s=5.0, teacher_max_retries=0, teacher_backoff_s=0.0,
        teacher_breaker_failures=100, teacher_cache=False,
        # One HTTP call per step carrying all 8 items: every item of a faulty step shares that call's
        # failure kind (8 concurrent calls could overflow the tiny test server's accept backlog).
        teacher_max_concurrency=1)
    vision = VisionConfig(max_frames=4, video_max_pixels=3136, video_min_pixels=3136)
    trainer = FFRTrainer(tiny_qwen25_ckpt, ["accuracy", "format"], args, records, vision_config=vision,
                         torch_dtype="float32", callbacks=[JsonlLogCallback(), ScheduleCallback(faulty_teacher)])
    started = time.monotonic()
    trainer.train()
    assert time.monotonic() - started < 60
    assert trainer.state.global_step == len(SCHEDULE)
    rows = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert [r["step"] for r in rows] == list(range(1, len(SCHEDULE) + 1))
    for mode, row in zip(SCHEDULE, rows):
        assert row["ffr/intervention_ratio"] == 1.0  # a random student fails every rollout: 8 requests
        if mode == "ok":
            assert row["teacher/status/ok"] == 8.0 and row["ffr/patch_coverage"] == 1.0
            assert row["ffr/second_round_generate"] == 1.0
            assert not any(k.startswith("teacher/errors/") for k in row)
        else:
            assert row[f"teacher/errors/{ERROR_KIND[mode]}"] == 8.0, mode
            assert row["ffr/patch_coverage"] == 0.0 and row["ffr/chosen_patched_frac"] == 0.0, mode
            assert row["ffr/outcome/no_patch"] == 8.0 and row["ffr/second_round_generate"] == 0.0, mode
        assert row["loss"] == row["loss"]  # finite, not NaN
    log = [json.loads(x) for x in (tmp_path / "out" / "patch_log" / "rank0.jsonl").read_text().splitlines()]
    by_step = {step: {x["status"] for x in log if x["step"] == step} for step in range(len(SCHEDULE))}
    assert by_step == {0: {"ok"}, 1: {"error"}, 2: {"timeout"}, 3: {"error"}, 4: {"error"}, 5: {"ok"}}


# ------------------------------------------------------------------ a teacher that cannot serve the run
class ModeSchedule(TrainerCallback):
    def __init__(self, teacher: FaultyTeacher, schedule: list[str]):
        self.teacher, self.schedule = teacher, schedule

    def on_step_begin(self, args, state, control, **kwargs):
        self.teacher.set_mode(self.schedule[state.global_step])


def guarded_trainer(tmp_path, ckpt, synthetic_dir, teacher, callbacks=(), **kw):
    records = [r for r in load_records(synthetic_dir / "train.jsonl") if r["data_type"] == "video"]
    args = FFRGRPOConfig(
        output_dir=str(tmp_path / "out"), num_generations=4, max_completion_length=8, per_device_train_batch_size=2,
        logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, seed=0, dataloader_num_workers=0,
        log_completions=False, ffr_enable=True, teacher_url=f"http://127.0.0.1:{teacher.port}",
        teacher_timeout_s=TIMEOUT_S, teacher_step_deadline_s=5.0, teacher_max_retries=0, teacher_backoff_s=0.0,
        teacher_breaker_failures=100, teacher_cache=False, teacher_max_concurrency=1, **kw)
    vision = VisionConfig(max_frames=4, video_max_pixels=3136, video_min_pixels=3136)
    return FFRTrainer(ckpt, ["accuracy", "format"], args, records, vision_config=vision, torch_dtype="float32",
                      callbacks=[JsonlLogCallback(), *callbacks])


@pytest.mark.parametrize("mode, status", [("unauthorized", 401), ("forbidden", 403)])
def test_refused_key_fails_at_start(tiny_qwen25_ckpt, synthetic_dir, tmp_path, faulty_teacher, mode, status):
    faulty_teacher.set_mode(mode)
    url = f"http://127.0.0.1:{faulty_teacher.port}"
    with pytest.raises(TeacherUnavailableError, match=f"teacher at {url}/ready refused .*HTTP {status}"):
        guarded_trainer(tmp_path, tiny_qwen25_ckpt, synthetic_dir, faulty_teacher, max_steps=1)


@pytest.mark.parametrize("mode", ["starting", "down"])
def test_teacher_not_up_yet_only_warns(tiny_qwen25_ckpt, synthetic_dir, tmp_path, faulty_teacher, caplog, mode):
    faulty_teacher.set_mode(mode)
    with caplog.at_level(logging.WARNING, logger="ffr.teacher_health"):
        trainer = guarded_trainer(tmp_path, tiny_qwen25_ckpt, synthetic_dir, faulty_teacher, max_steps=1)
    assert trainer.teacher is not None
    assert any("is not ready" in r.getMessage() for r in caplog.records)


def test_teacher_failing_every_round_stops_the_run(tiny_qwen25_ckpt, synthetic_dir, tmp_path, faulty_teacher):
    schedule = ["ok", "http500", "http500", "http500", "http500", "ok"]
    trainer = guarded_trainer(tmp_path, tiny_qwen25_ckpt, synthetic_dir, faulty_teacher,
                              [ModeSchedule(faulty_teacher, schedule)], max_steps=len(schedule),
                              teacher_max_failed_steps=3)
    with pytest.raises(TeacherUnavailableError, match=r"for 3 consecutive teacher rounds .*'http_5xx': 8"):
        trainer.train()
    assert trainer.state.global_step == 3  # steps 1-3 trained; the 3rd failed round (4th step) stopped it


def test_warn_mode_trains_on_and_a_patch_resets_the_count(tiny_qwen25_ckpt, synthetic_dir, tmp_path,
                                                          faulty_teacher, caplog):
    schedule = ["http500", "http500", "ok", "http500", "http500", "http500"]
    trainer = guarded_trainer(tmp_path, tiny_qwen25_ckpt, synthetic_dir, faulty_teacher,
                              [ModeSchedule(faulty_teacher, schedule)], max_steps=len(schedule),
                              teacher_max_failed_steps=2, teacher_on_failed_steps="warn")
    with caplog.at_level(logging.WARNING, logger="ffr.teacher_health"):
        trainer.train()
    assert trainer.state.global_step == len(schedule)
    rows = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert [r["teacher/consecutive_failed_rounds"] for r in rows] == [1, 2, 0, 1, 2, 3]
    warned = [r.getMessage() for r in caplog.records if "consecutive teacher rounds" in r.getMessage()]
    assert len(warned) == 2 and all("training on" in m for m in warned)  # at 2 failed rounds, twice
