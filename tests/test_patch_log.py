"""The patch-log record (``ffr.patch_log``) and the JSONL writing helpers (``r1v.jsonl``):
old lines load with defaults, bad lines are named, appends / torn tails / rewrites / resume truncation."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from ffr.patch_log import BadLine, PatchLogRecord, read_patch_log, truncate_patch_logs
from r1v.data import json_records
from r1v.jsonl import append_jsonl, repair_torn_tail, truncate_jsonl_after_step, write_jsonl_atomic

OLD = Path(__file__).parent / "fixtures" / "patch_log" / "old_format.jsonl"


def test_old_format_lines_load_with_defaults():
    trainer, mined = list(read_patch_log(OLD))
    assert trainer.where == f"{OLD}:1" and mined.where == f"{OLD}:2"
    assert trainer.step == 3 and trainer.patch.error_types == ["temporal"] and trainer.outcome == "fixed"
    for rec in (trainer, mined):  # fields the old writers did not have
        assert rec.regenerated == 0 and rec.patch_error_types == [] and rec.leak_source is None
    assert trainer.mine_key is None and mined.mine_key == "0123456789abcdef01234567" and mined.step is None
    # A record written back out carries every field, and reads back equal.
    again = PatchLogRecord.model_validate(json.loads(json.dumps(trainer.to_json())))
    assert again.to_json() == trainer.to_json() and set(trainer.to_json()) == set(PatchLogRecord.model_fields)


def test_bad_lines_are_named_or_passed_to_on_bad(tmp_path):
    good = OLD.read_text().splitlines()[0]
    path = tmp_path / "rank0.jsonl"
    no_question = {k: v for k, v in json.loads(good).items() if k != "question"}
    path.write_bytes("\n".join([good, "", json.dumps(no_question), '{"status": "ok", "typo": 1}', "[1]"]).encode()
                     + b"\n{\"status\": \"caf\xe9\"}\n")
    with pytest.raises(BadLine, match=rf"^{path}:3: a patch line needs \['question'\]"):
        list(read_patch_log(path))
    bad = []
    records = list(read_patch_log([path, OLD], on_bad=bad.append))
    assert [r.where for r in records] == [f"{path}:1", f"{OLD}:1", f"{OLD}:2"]
    assert [str(e).split(": ")[0] for e in bad] == [f"{path}:{n}" for n in (3, 4, 5, 6)]
    assert "typo" in str(bad[1]) and "expected a JSON object" in str(bad[2]) and "not UTF-8" in str(bad[3])
    with pytest.raises(BadLine, match="cannot read"):
        list(read_patch_log(tmp_path / "missing.jsonl", on_bad=bad.append))


def test_append_is_one_write_per_batch_and_torn_tails_are_cut(tmp_path, caplog):
    path = tmp_path / "log.jsonl"
    assert append_jsonl(path, []) == 0 and not path.exists()

    def writer(k):
        for i in range(50):
            append_jsonl(path, [{"k": k, "i": i, "text": "é" * 200}, {"k": k, "i": i, "second": True}])

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = [row for _, row in json_records(path)]
    assert len(rows) == 400 and "é" in path.read_text(encoding="utf-8")
    # The two rows of a batch stay adjacent: one write, never interleaved with another writer's.
    assert all(rows[j]["k"] == rows[j + 1]["k"] and rows[j + 1].get("second") for j in range(0, 400, 2))
    size = path.stat().st_size
    with open(path, "ab") as fh:
        fh.write(b'{"k": 9, "i"')  # a write torn by a kill
    assert repair_torn_tail(path) == 12 and path.stat().st_size == size and "torn last line" in caplog.text
    assert repair_torn_tail(path) == 0 and repair_torn_tail(tmp_path / "absent.jsonl") == 0
    append_jsonl(path, [{"k": 5}], fsync=True)
    assert [row for _, row in json_records(path)][-1] == {"k": 5}


def test_atomic_rewrite_and_step_truncation(tmp_path):
    path = tmp_path / "sub" / "rows.jsonl"
    assert write_jsonl_atomic(({"step": s} for s in range(1, 5)), path) == 4
    assert not path.with_name("rows.jsonl.tmp").exists()
    with open(path, "a") as fh:
        fh.write('{"step": null}\n{"ste')
    assert truncate_jsonl_after_step(path, 2) == 4
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'


def test_patch_logs_are_truncated_per_rank(tmp_path):
    folder = tmp_path / "patch_log"
    folder.mkdir()
    for rank in range(4):  # an earlier run with 4 ranks, killed after writing step 3
        (folder / f"rank{rank}.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3)))
    # Rank 1 of a 2-rank resume at step 2 (which generates step 2 again) truncates only its own file.
    assert truncate_patch_logs(tmp_path, 2, rank=1, world_size=2) == 2
    # Rank 0 truncates its own and those of ranks no process of this run writes (2, 3).
    assert truncate_patch_logs(tmp_path, 2, rank=0, world_size=2) == 6
    assert [len((folder / f"rank{r}.jsonl").read_text().splitlines()) for r in range(4)] == [1, 1, 1, 1]
    assert truncate_patch_logs(tmp_path / "fresh", 0, rank=0, world_size=1) == 0
