"""Patch mining: ask the teacher for patches of a dataset's failed rollouts ahead of time.

    python -m ffr.mine --teacher-url URL --data DATA.jsonl --completions DUMP... --out mined.jsonl \
        [--api-key-file F] [--batch-size N] [--use-gt/--no-gt] [--correct-threshold 1.0]

Inputs (``--completions``, files or folders of ``*.jsonl``), one format per line:
- a training completions dump (``OUTPUT/completions/step_*.jsonl``, written by the
  GRPO trainer with ``log_completions``): ``problem_id``, ``completion`` and
  ``rewards/accuracy``; failed = accuracy < ``--correct-threshold`` (Eq. 4);
- eval predictions (``eval.run``'s ``predictions.jsonl``): ``id`` (= the dataset's
  problem_id), ``output`` and ``score``; failed = score < threshold; unscored rows
  (score null) are left out and counted.
Each failed rollout is joined to its dataset record by problem_id (``r1v.data``),
its frame times are computed with the training frame policy (``r1v.vision``,
``--fps/--min-frames/--max-frames``), and the request is built exactly as the
trainer builds it (``ffr.rollouts.build_request_item``).

Output: one patch-log line per item (``ffr.patch_log.PatchLogRecord``, as the trainer
writes it, with ``step`` null, ``outcome`` "mined" or "no_patch", plus ``mine_key`` and
``source``), appended batch by batch with one write each, so ``python -m
ffr.audit`` reads it. Resumable: an item whose ``mine_key`` (hash of problem_id,
response and GT mode) already has a final status (ok, leak, skipped, refused) in --out
is not asked again; error / timeout items are retried and their new line appended.
A batch the service refuses as too large (HTTP 413) is resent one item per call; an
item refused on its own is logged with status ``refused`` (final; ``--retry-refused``).
Exit status: 0 when every item got a final status, 1 when some ended in error /
timeout (rerun to retry them), 2 for bad inputs (no rows, non-finite or boolean
rewards, ...), each named by file and line.

Into the service cache: start the service with ``--cache-file`` and every ok
patch it makes here is stored there and served again after a restart. A cache hit
needs identical request content (same response, frames, question, gold), so
mined patches are reused by reruns on the same rollouts (and by audits), not by
fresh on-policy rollouts.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from tqdm import tqdm

from ffr.endpoint import FRAME_TIME_FIELDS, KeyFileError, add_frame_policy_args, frame_policy, read_key_file
from ffr.patch_log import PatchLogRecord, read_patch_log
from ffr.redact import redact
from ffr.rollouts import build_request_item, gold_answer
from ffr.teacher.client import TeacherClient
from ffr.teacher.schema import PatchRequestItem, PatchResult
from r1v.answers import extract_answer
from r1v.data import json_records, load_records
from r1v.jsonl import append_jsonl, repair_torn_tail
from r1v.vision import VisionConfig, load_video

logger = logging.getLogger(__name__)

# Statuses a rerun does not ask again. "refused": the service refused the item sent alone with
# HTTP 413 (too large); resending it cannot succeed and would append its (large) line again.
FINAL_STATUSES = ("ok", "leak", "skipped", "refused")
RETRYABLE_STATUSES = ("error", "timeout")


@dataclass
class Rollout:
    """One failed rollout read from a dump: where it came from, its problem, text and reward."""

    source: str
    problem_id: str
    response: str
    reward: float


def iter_rows(paths: list[str]) -> Iterator[tuple[str, dict]]:
    """('file:line', row) of every non-blank line; folders expand to their ``*.jsonl`` files."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.jsonl"))
            if not found:  # an empty folder is a wrong path, not "nothing failed"
                raise ValueError(f"{p}: completions folder holds no *.jsonl file")
            files += found
        else:
            files.append(p)
    for path in files:
        if not path.is_file():
            raise ValueError(f"{path}: completions file not found")
        for where, row in json_records(path):
            if not isinstance(row, dict):
                raise ValueError(f"{where}: expected a JSON object")
            yield where, row


def read_failed(paths: list[str], threshold: float, counts: Counter) -> list[Rollout]:
    """Failed rollouts of completion dumps / eval predictions (see the module docstring)."""
    failed, n_rows = [], 0
    for where, row in iter_rows(paths):
        n_rows += 1
        if "completion" in row:
            if "rewards/accuracy" not in row:
                raise ValueError(f"{where}: a completions-dump row needs 'rewards/accuracy'")
            pid, text, reward = row.get("problem_id"), row["completion"], row["rewards/accuracy"]
        elif "output" in row and "id" in row:
            pid, text, reward = row["id"], row["output"], row.get("score")
            if reward is None:
                counts["unscored"] += 1
                continue
        else:
            raise ValueError(f"{where}: neither a completions-dump row (problem_id, completion) nor an "
                             "eval prediction (id, output, score)")
        # bool is an int to Python: a reward of `true` must not count as 1.0 (correct); NaN would
        # count as failed (NaN >= t is False) and be mined.
        if pid is None or not isinstance(text, str) or isinstance(reward, bool) \
                or not isinstance(reward, (int, float)) or not math.isfinite(reward):
            raise ValueError(f"{where}: needs a problem id, a text response and a finite numeric reward / score, "
                             f"got reward {reward!r}")
        if reward >= threshold:
            counts["correct"] += 1
            continue
        failed.append(Rollout(where, str(pid), text, float(reward)))
    if not n_rows:  # empty dumps: a wrong path or a run that logged nothing, not "all correct"
        raise ValueError(f"no completion rows in {' '.join(map(str, paths))}")
    return failed


def mine_key(problem_id: str, response: str, use_gt: bool) -> str:
    blob = json.dumps([problem_id, response, use_gt], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def read_done(out: Path, final: tuple[str, ...] = FINAL_STATUSES) -> set[str]:
    """Keys with a status in ``final`` in `out`; a torn last line is cut off (with a warning)."""
    if not out.exists():
        return set()
    repair_torn_tail(out)
    done = set()
    for rec in read_patch_log(out):
        if rec.mine_key is None:
            raise ValueError(f"{rec.where}: not a mined patch-log line (no mine_key)")
        if rec.status in final:
            done.add(rec.mine_key)
    return done


class Timestamps:
    """Frame times per media file under the training frame policy (each video decoded once)."""

    def __init__(self, cfg: VisionConfig):
        self.cfg = cfg
        self._seen: dict[str, list[float]] = {}

    def __call__(self, record: dict) -> list[float]:
        if record.get("data_type") == "image":
            return []
        path = record["path"]
        if path not in self._seen:
            self._seen[path] = list(load_video(path, self.cfg).timestamps)
        return self._seen[path]


def log_line(item: PatchRequestItem, result: PatchResult, record: dict, rollout: Rollout,
             key: str) -> PatchLogRecord:
    """The patch-log record of one mined item (no second round: ``step`` null, outcome mined / no_patch)."""
    return PatchLogRecord(
        step=None, sample_id=item.sample_id, problem_id=record.get("problem_id"),
        question=item.question, options=item.options, problem_type=item.problem_type,
        gold_answer=gold_answer(record), video_path=item.video_path, timestamps=item.timestamps,
        student_response=item.student_response, student_answer=extract_answer(item.student_response),
        status="refused" if too_large(result) else result.status,
        error_type=result.error_type, detail=redact(result.detail), patch=result.patch,
        patched_answer=None, first_reward=rollout.reward, patched_reward=None, chosen_patched=False,
        outcome="mined" if result.status == "ok" else "no_patch",
        teacher_model=result.teacher_model, prompt_version=result.prompt_version,
        tokens_in=result.tokens_in, tokens_out=result.tokens_out, regenerated=result.regenerated,
        patch_error_types=result.patch_error_types, leak_source=result.leak_source, mine_key=key,
        source=rollout.source)


def plan(args: argparse.Namespace, counts: Counter) -> list[tuple[Rollout, dict, str]]:
    """(rollout, record, key) of every failed rollout still to mine, deduplicated by key."""
    records = {}
    for rec in load_records(args.data, args.data_root):
        records.setdefault(str(rec["problem_id"]), rec)
    final = tuple(s for s in FINAL_STATUSES if not (args.retry_refused and s == "refused"))
    done = read_done(Path(args.out), final)
    todo, seen = [], set()
    for ro in read_failed(args.completions, args.correct_threshold, counts):
        key = mine_key(ro.problem_id, ro.response, args.use_gt)
        if ro.problem_id not in records:
            counts["unknown_problem_id"] += 1
            logger.warning("%s: problem_id %r is not in %s; left out", ro.source, ro.problem_id, args.data)
        elif key in done:
            counts["already_mined"] += 1
        elif key in seen:
            counts["duplicate"] += 1
        else:
            seen.add(key)
            todo.append((ro, records[ro.problem_id], key))
    return todo


def too_large(result: PatchResult) -> bool:
    """The service refused the request with HTTP 413 (body or item count over its limits)."""
    return result.status == "error" and result.error_type == "http_4xx" and (result.detail or "").startswith("HTTP 413")


def request_isolating_refusals(client: TeacherClient, items: list[PatchRequestItem]) -> list[PatchResult]:
    """``client.request_patches(items)``; a batch refused with 413 is resent one item per call, so
    only the item that is too large on its own stays refused and the others are mined."""
    results = client.request_patches(items)
    if len(items) > 1 and any(too_large(r) for r in results):
        results = [client.request_patches([it])[0] if too_large(r) else r for it, r in zip(items, results)]
    return results


def mine(args: argparse.Namespace, client: TeacherClient) -> Counter:
    """Mine every pending item in batches; returns counts of statuses and of left-out rows."""
    counts: Counter = Counter()
    todo = plan(args, counts)
    times = Timestamps(frame_policy(args, FRAME_TIME_FIELDS))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(todo), desc="mining patches", unit="item", disable=args.no_progress) as bar:
        for start in range(0, len(todo), args.batch_size):
            batch = todo[start:start + args.batch_size]
            items = [build_request_item(rec, f"{ro.problem_id}#mine-{key[:12]}", times(rec), ro.response,
                                        use_gt=args.use_gt) for ro, rec, key in batch]
            results = request_isolating_refusals(client, items)
            lines = [log_line(it, res, rec, ro, key)
                     for it, res, (ro, rec, key) in zip(items, results, batch, strict=True)]
            # One fsync'd O_APPEND write per batch: a kill loses at most the batch in flight.
            append_jsonl(out, [line.to_json() for line in lines], fsync=True)
            counts.update(f"status/{line.status}" for line in lines)
            for line in lines:
                if line.status == "refused":
                    logger.warning("%s: refused by the service (%s); not asked again without --retry-refused",
                                   line.sample_id, line.detail)
            bar.update(len(batch))
    return counts


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ffr.mine", description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher-url", required=True, help="base URL of the teacher service")
    p.add_argument("--data", required=True, help="dataset JSON / JSONL the rollouts were made from")
    p.add_argument("--data-root", default=None, help="media root of --data (default: its folder)")
    p.add_argument("--completions", nargs="+", required=True, metavar="DUMP",
                   help="completions dumps / eval predictions (files, or folders of *.jsonl)")
    p.add_argument("--out", required=True, help="patch-log JSONL to append to (resumed if it exists)")
    p.add_argument("--api-key-file", default=None, help="file holding the service's bearer token")
    p.add_argument("--batch-size", type=int, default=32, help="items per teacher call batch")
    p.add_argument("--use-gt", dest="use_gt", action="store_true", default=True,
                   help="send the gold answer to the teacher (Eq. 5; the default)")
    p.add_argument("--no-gt", dest="use_gt", action="store_false",
                   help="the no-GT-reference mode: the teacher sees no gold answer")
    p.add_argument("--correct-threshold", type=float, default=1.0, help="correct iff reward / score >= this")
    # Only frame *times* go to the service, so only the fields that decide them are flags here.
    add_frame_policy_args(p, FRAME_TIME_FIELDS, title="frame policy (must match training; frame times only)")
    p.add_argument("--timeout-s", type=float, default=600.0, help="timeout of one teacher call")
    p.add_argument("--max-retries", type=int, default=2, help="retries of a failed teacher call")
    p.add_argument("--retry-refused", action="store_true",
                   help="ask again about items the service refused as too large (HTTP 413) in earlier runs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.timeout_s <= 0 or args.max_retries < 0:
        p.error("--batch-size must be >= 1, --timeout-s > 0 and --max-retries >= 0")
    if not 0.0 < args.correct_threshold <= 1.0:
        p.error(f"--correct-threshold must be in (0, 1], got {args.correct_threshold}")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        # read_key_file registers the key: masked in every detail written and every log line
        api_key = read_key_file(args.api_key_file, "--api-key-file") if args.api_key_file else None
    except KeyFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # A batch's deadline covers every retry of its calls. No circuit breaker: offline, each batch
    # may as well try; items that fail come back as errors and are retried by the next run.
    client = TeacherClient(args.teacher_url, api_key=api_key, timeout_s=args.timeout_s,
                           step_deadline_s=args.timeout_s * (args.max_retries + 1) + 60.0,
                           max_retries=args.max_retries, breaker_failures=0, cache=False)
    try:
        counts = mine(args, client)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()
    print("mined: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) if counts else "mined: nothing to do")
    failed = sum(counts[f"status/{s}"] for s in RETRYABLE_STATUSES)
    if failed:  # e.g. a dead --teacher-url: every item is an error; the exit code must say so
        print(f"error: {failed} item(s) failed (status error / timeout, see --out); rerun to retry them",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
