"""Audit patch logs: leak rates (paper Table 5 layout) and fix rates by error type (Table 10).

    python -m ffr.audit OUT/patch_log/rank*.jsonl mined.jsonl --out audit/ \
        [--judge-base-url URL --judge-model M --judge-api-key-file F --judge-samples 3] [--skip-bad]

Input: patch-log JSONL lines (``ffr.patch_log.PatchLogRecord``) as written by
`FFRTrainer.write_patch_log` and by ``python -m ffr.mine``; lines of older writers load
with defaults for the fields added since.

Leakage (Table 5). Every logged patch is a proposal, and so is every line with
status ``leak`` (the service dropped the patch; its `detail` holds the reason).
The rule gates (`ffr.leakage.patch_leaks`) run on every logged patch; with
``--judge-*`` the blind-test judge (`ffr.teacher.judge`) also runs on every
multiple-choice patch the gates pass. A leak is:
- **direct**: a rule gate hit that names the answer: an answer phrase ("the
  answer is"), the gold option letter, the gold text, or the gold number;
- **partial**: any other leak: a rule hit on another option's letter (ruling
  options out, i.e. elimination) or a leak only the judge finds (paraphrase).
Rates are leaks / proposals, per (teacher model, prompt version) and overall.

Fix rate (Table 10): over lines whose outcome is fixed / improved / not_fixed
(the patched second round ran), fix rate = fixed / samples; a patch with
several error types counts under each of them, once in Overall.

Outputs: the two tables as markdown on stdout, and with ``--out``:
table5_leakage.{md,csv}, table10_fix_rate.{md,csv} and leaks.jsonl (every
leak with its file:line and reason, for manual checking). A malformed line
(bad JSON or fields, not UTF-8, nested too deeply) stops the audit with a
one-line error naming file and line, unless ``--skip-bad`` (then it is
skipped, logged and counted). ``--out`` must be a folder (or not exist yet).
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ffr.endpoint import add_judge_args, build_judge, judge_endpoint
from ffr.leakage import patch_leaks
from ffr.patch import EvidencePatch
from ffr.patch_log import BadLine, PatchLogRecord, read_patch_log
from ffr.teacher.judge import BlindJudge, JudgeVerdict
from ffr.teacher.schema import PatchRequestItem
from r1v.jsonl import write_jsonl_atomic

logger = logging.getLogger(__name__)

PATCHED_OUTCOMES = ("fixed", "improved", "not_fixed")
# Fragments of `ffr.leakage` reasons that name the answer itself (see "direct" above).
_DIRECT = ("states the answer", "names the gold option letter", "gold answer text", "states the gold number")


@dataclass
class Entry:
    """One audited log line: its record; `where` is 'file:line'."""

    record: PatchLogRecord
    rule_reason: Optional[str] = None
    verdict: Optional[JudgeVerdict] = None
    judge_error: Optional[str] = None

    @property
    def where(self) -> str:
        return self.record.where

    @property
    def patch(self) -> Optional[EvidencePatch]:
        return self.record.patch

    @property
    def proposal(self) -> bool:
        return self.patch is not None or self.record.status == "leak"

    @property
    def leak_reason(self) -> Optional[str]:
        """Why this proposal leaks (gate reason, service detail or judge reason), or None."""
        if self.patch is None:
            if self.record.status != "leak":
                return None
            return self.record.detail or "dropped by the service's leak check"
        if self.rule_reason:
            return self.rule_reason
        return self.verdict.reason if self.verdict is not None and self.verdict.leak else None

    @property
    def leak_class(self) -> Optional[str]:
        reason = self.leak_reason
        return None if reason is None else classify_reason(reason)


def classify_reason(reason: str) -> str:
    """'direct' when a gate reason names the answer, else 'partial'."""
    return "direct" if any(f in reason for f in _DIRECT) else "partial"


def audit_record(record: PatchLogRecord) -> Entry:
    """Run the rule gates on a record's patch; raises BadLine (naming its line) when they cannot run."""
    entry = Entry(record)
    if record.patch is None:
        return entry
    if record.gold_answer is None:
        raise BadLine(f"{record.where}: gold_answer is null; the leak check needs it")
    try:
        entry.rule_reason = patch_leaks(record.patch, record.gold_answer, record.options or [], record.problem_type)
    except (ValueError, TypeError) as exc:
        raise BadLine(f"{record.where}: {exc}") from exc
    return entry


def read_logs(paths: list[str], skip_bad: bool = False) -> tuple[list[Entry], int]:
    """Entries of every line of `paths` (rule gates already run) and the number of skipped bad lines."""
    entries, skipped = [], 0

    def skip(exc: BadLine) -> None:
        nonlocal skipped
        if not skip_bad:
            raise exc
        logger.warning("skipping %s", exc)
        skipped += 1

    for record in read_patch_log(paths, on_bad=skip):
        try:
            entries.append(audit_record(record))
        except BadLine as exc:
            skip(exc)
    return entries, skipped


def judge_item(entry: Entry) -> PatchRequestItem:
    rec = entry.record
    return PatchRequestItem(sample_id=rec.sample_id or entry.where, video_path=rec.video_path or "-",
                            timestamps=rec.timestamps, question=rec.question, options=rec.options or [],
                            problem_type=rec.problem_type, student_response=rec.student_response or "",
                            gold_answer=rec.gold_answer)


async def run_judge(entries: list[Entry], judge: BlindJudge, concurrency: int = 8) -> int:
    """Blind-test every applicable patch the gates passed; returns how many judge calls failed."""
    gate = asyncio.Semaphore(concurrency)

    async def one(entry: Entry) -> None:
        async with gate:
            try:
                entry.verdict = await judge.check(judge_item(entry), entry.patch)
            except Exception as exc:  # one failed judgement is reported, the audit goes on
                entry.judge_error = f"{type(exc).__name__}: {exc}"
                logger.warning("%s: judge failed: %s", entry.where, entry.judge_error)

    todo = [e for e in entries if e.patch is not None and not e.rule_reason]
    await asyncio.gather(*(one(e) for e in todo))
    return sum(e.judge_error is not None for e in todo)


def leak_table(entries: list[Entry]) -> list[dict]:
    """Table 5 rows: one per (teacher model, prompt version), then 'All' when there are several."""
    groups: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        if e.proposal:
            groups[f"{e.record.teacher_model or 'unknown'} / {e.record.prompt_version or '-'}"].append(e)
    if len(groups) != 1:
        groups["All"] = [e for e in entries if e.proposal]
    rows = []
    for name, group in groups.items():
        n = len(group)
        counts = Counter(e.leak_class for e in group)
        direct, partial = counts["direct"], counts["partial"]
        rows.append({"Teacher / prompt": name, "Patches": n, "Direct": _pct(direct, n), "Partial": _pct(partial, n),
                     "Total": _pct(direct + partial, n), "direct_n": direct, "partial_n": partial})
    return rows


def fix_table(entries: list[Entry]) -> list[dict]:
    """Table 10 rows: Spatial, Temporal, Misconception, Overall."""
    patched = [e for e in entries if e.record.outcome in PATCHED_OUTCOMES and e.patch is not None]
    rows = []
    for et in ("spatial", "temporal", "misconception"):
        of_type = [e for e in patched if et in e.patch.error_types]
        rows.append(_fix_row(et.capitalize(), of_type))
    rows.append(_fix_row("Overall", patched))
    return rows


def _fix_row(name: str, group: list[Entry]) -> dict:
    fixed = sum(e.record.outcome == "fixed" for e in group)
    return {"Error Type": name, "Samples": len(group), "Fix Rate": _pct(fixed, len(group)), "fixed_n": fixed}


def _pct(k: int, n: int) -> str:
    return f"{100.0 * k / n:.1f}%" if n else "n/a"


def markdown(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_outputs(out: Path, entries: list[Entry], t5: list[dict], t10: list[dict], text: dict[str, str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("table5_leakage", t5), ("table10_fix_rate", t10)):
        (out / f"{name}.md").write_text(text[name] + "\n", encoding="utf-8")
        with open(out / f"{name}.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    # Every leak with its file:line, for manual checking; replaced whole, so a rerun never mixes runs.
    write_jsonl_atomic(({"where": e.where, "sample_id": e.record.sample_id, "class": e.leak_class,
                         "reason": e.leak_reason,
                         "patch": e.patch.model_dump(mode="json") if e.patch is not None else None}
                        for e in entries if e.leak_class), out / "leaks.jsonl")


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ffr.audit", description=__doc__.split("\n\n")[0])
    p.add_argument("patch_logs", nargs="+", metavar="PATCH_LOG", help="patch-log JSONL files")
    p.add_argument("--out", default=None, help="folder for the markdown / CSV tables and leaks.jsonl")
    p.add_argument("--skip-bad", action="store_true", help="skip (and count) malformed lines instead of stopping")
    add_judge_args(p)  # the same judge flags as the teacher service (ffr.endpoint)
    args = p.parse_args(argv)
    try:
        # Checked (key file included) before any log is read; the judge is built again in main.
        judge_endpoint(args)
    except ValueError as exc:  # KeyFileError included: one line naming the flag and the file
        p.error(str(exc))
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        # Checked before any work: the tables would otherwise be printed and then lost.
        print(f"error: --out {args.out} exists and is not a folder", file=sys.stderr)
        return 2
    try:
        entries, skipped = read_logs(args.patch_logs, args.skip_bad)
        judge = build_judge(args)
    except (BadLine, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    judge_errors = asyncio.run(_judge_all(entries, judge)) if judge else 0
    t5, t10 = leak_table(entries), fix_table(entries)
    text = {"table5_leakage": markdown(t5, ["Teacher / prompt", "Patches", "Direct", "Partial", "Total"]),
            "table10_fix_rate": markdown(t10, ["Error Type", "Samples", "Fix Rate"])}
    print("## Answer leakage (Table 5 layout)\n\n" + text["table5_leakage"])
    print("\n## Fix rate by error type (Table 10 layout)\n\n" + text["table10_fix_rate"])
    print(f"\n{len(entries)} lines read, {skipped} bad lines skipped, judge: "
          + (f"{args.judge_model} ({judge_errors} failed judgements)" if judge else "off"))
    if args.out:
        try:
            write_outputs(Path(args.out), entries, t5, t10, text)
        except OSError as exc:
            print(f"error: --out {args.out}: cannot write the tables ({exc.strerror or exc})", file=sys.stderr)
            return 2
    return 0


async def _judge_all(entries: list[Entry], judge: BlindJudge) -> int:
    try:
        return await run_judge(entries, judge)
    finally:
        await judge.client.close()


if __name__ == "__main__":
    sys.exit(main())
