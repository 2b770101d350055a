"""ffr.teacher_health: the failed-round count and its verdicts, alone and across two gloo ranks that see
different things (they must agree on the count and raise at the same round); the start-up probe."""
from __future__ import annotations

import json
import os

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from ffr.patch import EvidencePatch
from ffr.teacher.client import ReadyProbe, TeacherClient
from ffr.teacher.schema import PatchResult, failure
from ffr.teacher_health import (ANSWERED, FAILED, IDLE, PATCHED, FailedRoundGuard, TeacherUnavailableError,
                                check_teacher_at_start, round_state)


PATCH = EvidencePatch(error_types=["spatial"], guidance="Look again at the region where the objects meet.")


def results(*statuses: str) -> list[PatchResult]:
    out = []
    for i, status in enumerate(statuses):
        if status in ("error", "timeout"):
            out.append(failure(f"s{i}", status, "http_4xx" if status == "error" else "deadline", "HTTP 401: no"))
        else:
            out.append(PatchResult(sample_id=f"s{i}", status=status, patch=PATCH if status == "ok" else None))
    return out


def test_round_state_orders_patch_over_errors_over_answers():
    assert round_state([]) == IDLE
    assert round_state(results("skipped", "leak")) == ANSWERED
    assert round_state(results("skipped", "timeout")) == FAILED
    assert round_state(results("error", "ok", "timeout")) == PATCHED
    assert IDLE < ANSWERED < FAILED < PATCHED  # MAX over ranks gives the round's verdict


def test_guard_counts_resets_and_raises_naming_the_errors():
    guard = FailedRoundGuard(3, "error", "http://teacher:1")
    counts = [guard.update(r) for r in (results("error"), [], results("timeout", "skipped"), results("ok", "error"),
                                        results("error"), results("skipped"), results("error"), results("error"))]
    assert counts == [1, 1, 2, 0, 1, 0, 1, 2]  # idle rounds leave it, a patch or a clean answer resets it
    with pytest.raises(TeacherUnavailableError, match=r"http://teacher:1 for 3 consecutive .*'http_4xx': 2"):
        guard.update(results("error", "error"))
    disabled = FailedRoundGuard(0, "error", "http://teacher:1")
    assert all(disabled.update(results("error")) == 0 for _ in range(5))
    with pytest.raises(ValueError, match="teacher_on_failed_steps"):
        FailedRoundGuard(3, "ignore", "http://teacher:1")


class _Teacher:
    url = "http://teacher:1"

    def __init__(self, status):
        self.status = status

    def probe_ready(self):
        return ReadyProbe(self.status == 200, self.status, f"HTTP {self.status}")


# ------------------------------------------------------------------ two ranks see different rounds
# Per round, what each rank's teacher requests returned.
RANK_ROUNDS = [
    (("error",), ()),  # rank 1 asked nothing: still a failed round for both
    (("error",), ("ok",)),  # a patch on rank 1 resets both
    (("timeout",), ("skipped",)),  # errors on one rank, clean answers on the other: failed
    ((), ("error", "error")),
    ((), ()),  # nobody asked: unchanged
    (("error",), ()),  # third failed round in a row: both ranks raise here
]


def _worker(rank: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    log = {"counts": [], "raised_at": None, "start": None}
    guard = FailedRoundGuard(3, "error", "http://teacher:1")
    try:
        for n, rounds in enumerate(RANK_ROUNDS):
            try:
                log["counts"].append(guard.update(results(*rounds[rank]), "cpu"))
            except TeacherUnavailableError:
                log["raised_at"] = n
                break
        try:  # only rank 0's key is refused; rank 1 must not go on alone
            check_teacher_at_start(_Teacher(401 if rank == 0 else 200), "cpu", rank == 0)
        except TeacherUnavailableError as exc:
            log["start"] = str(exc)
    finally:
        with open(os.path.join(out, f"rank{rank}.json"), "w") as fh:
            json.dump(log, fh)
        dist.destroy_process_group()


def test_two_ranks_agree_on_the_count_and_raise_together(tmp_path):
    # A file rendezvous: a port found free by binding and closing a socket could be taken before rank 0 binds it.
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    logs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for log in logs:
        assert log["counts"] == [1, 0, 1, 2, 2] and log["raised_at"] == 5
    assert "HTTP 401" in logs[0]["start"] and "refused on another rank" in logs[1]["start"]


def test_start_probe_against_a_real_service_with_a_wrong_key(tmp_path):
    from ffr.teacher.backends import AnnotationBackend
    from ffr.teacher.service import create_app, serve_in_thread

    with serve_in_thread(create_app(AnnotationBackend(), str(tmp_path), api_key="k3y")) as url:
        with TeacherClient(url, api_key="wrong") as bad, TeacherClient(url, api_key="k3y") as good:
            probe = bad.probe_ready()
            assert (probe.ready, probe.status, probe.auth_refused) == (False, 401, True)
            with pytest.raises(TeacherUnavailableError, match=f"teacher at {url}/ready refused .*HTTP 401"):
                check_teacher_at_start(bad)
            check_teacher_at_start(good)
    with TeacherClient(url) as gone:  # the service has stopped: no answer is not a refusal
        probe = gone.probe_ready(timeout_s=1.0)
        assert (probe.ready, probe.status, probe.auth_refused) == (False, None, False)
        check_teacher_at_start(gone)
