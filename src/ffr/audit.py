"""Audit patch logs: leak rates (paper Table 5 layout) and fix rates by error type (Table 10).

    python -m ffr.audit OUT/patch_log/rank*.jsonl mined.jsonl --out audit/ \
        [--judge-base-url URL --judge-model M --judge-api-key-file F --judge-samples 3] [--skip-bad]

Input: patch-log JSONL lines as written by `FFRTrainer.write_patch_log` and by
``python -m ffr.mine`` (keys used: patch, status, detail, question, options,
problem_type, gold_answer, timestamps, outcome, teacher_model, prompt_version).

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
import json
import logging
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from pydantic import ValidationError

from ffr.endpoint import add_judge_args, build_judge, judge_endpoint
from ffr.leakage import patch_leaks
from ffr.patch import EvidencePatch
from ffr.teacher.judge import BlindJudge, JudgeVerdict
from ffr.teacher.schema import PatchRequestItem

logger = logging.getLogger(__name__)

REQUEST_KEYS = ("question", "options", "problem_type", "gold_answer", "timestamps")
PATCHED_OUTCOMES = ("fixed", "improved", "not_fixed")
# Fragments of `ffr.leakage` reasons that name the answer itself (see "direct" above).
_DIRECT = ("states the answer", "names the gold option letter", "gold answer text", "states the gold number")


class BadLine(ValueError):
    """A patch-log line the audit cannot use; the message names file and line."""


@dataclass
class Entry:
    """One audited log line: `where` is 'file:line'; `patch` None for patch-less lines."""

    where: str
    row: dict
    patch: Optional[EvidencePatch]
    rule_reason: Optional[str] = None
    verdict: Optional[JudgeVerdict] = None
    judge_error: Optional[str] = None

    @property
    def proposal(self) -> bool:
        return self.patch is not None or self.row.get("status") == "leak"

    @property
    def leak_reason(self) -> Optional[str]:
        """Why this proposal leaks (gate reason, service detail or judge reason), or None."""
        if self.patch is None:
            if self.row.get("status") != "leak":
                return None
            return self.row.get("detail") or "dropped by the service's leak check"
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


def parse_line(line: str, where: str) -> Entry:
    """Validate one log line; raises BadLine naming `where`."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadLine(f"{where}: not JSON ({exc.msg}, column {exc.colno})") from exc
    except RecursionError as exc:  # a line of deeply nested brackets exhausts the parser's stack
        raise BadLine(f"{where}: JSON nested too deeply to read") from exc
    if not isinstance(row, dict):
        raise BadLine(f"{where}: expected a JSON object, got {type(row).__name__}")
    if row.get("patch") is None:
        return Entry(where, row, None)
    missing = [k for k in REQUEST_KEYS if k not in row]
    if missing:
        raise BadLine(f"{where}: a patch line needs {missing} (written by an older trainer?)")
    try:
        patch = EvidencePatch.model_validate(row["patch"])
    except ValidationError as exc:
        raise BadLine(f"{where}: invalid patch: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from exc
    entry = Entry(where, row, patch)
    if row["gold_answer"] is None:
        raise BadLine(f"{where}: gold_answer is null; the leak check needs it")
    try:
        entry.rule_reason = patch_leaks(patch, row["gold_answer"], row["options"] or [], row["problem_type"])
    except (ValueError, TypeError) as exc:
        raise BadLine(f"{where}: {exc}") from exc
    return entry


def read_logs(paths: list[str], skip_bad: bool = False) -> tuple[list[Entry], int]:
    """Entries of every line of `paths` (rule gates already run) and the number of skipped bad lines."""
    entries, skipped = [], 0
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise BadLine(f"{path}: cannot read ({exc.strerror})") from exc
        # Lines are decoded one by one, so a stray non-UTF-8 byte is a bad line (named, skippable),
        # not an error about the whole file.
        for n, raw in enumerate(data.split(b"\n"), 1):
            if not raw.strip():
                continue
            try:
                line = _decode(raw, f"{path}:{n}")
                entries.append(parse_line(line, f"{path}:{n}"))
            except BadLine as exc:
                if not skip_bad:
                    raise
                logger.warning("skipping %s", exc)
                skipped += 1
    return entries, skipped


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadLine(f"{where}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})") from exc


def judge_item(entry: Entry) -> PatchRequestItem:
    row = entry.row
    return PatchRequestItem(sample_id=str(row.get("sample_id") or entry.where), video_path=row.get("video_path") or "-",
                            timestamps=row["timestamps"], question=row["question"], options=row["options"] or [],
                            problem_type=row["problem_type"], student_response=row.get("student_response") or "",
                            gold_answer=row["gold_answer"])


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
            groups[f"{e.row.get('teacher_model') or 'unknown'} / {e.row.get('prompt_version') or '-'}"].append(e)
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
    patched = [e for e in entries if e.row.get("outcome") in PATCHED_OUTCOMES and e.patch is not None]
    rows = []
    for et in ("spatial", "temporal", "misconception"):
        of_type = [e for e in patched if et in e.patch.error_types]
        rows.append(_fix_row(et.capitalize(), of_type))
    rows.append(_fix_row("Overall", patched))
    return rows


def _fix_row(name: str, group: list[Entry]) -> dict:
    fixed = sum(e.row["outcome"] == "fixed" for e in group)
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
    with open(out / "leaks.jsonl", "w", encoding="utf-8") as fh:
        for e in entries:
            if e.leak_class:
                fh.write(json.dumps({"where": e.where, "sample_id": e.row.get("sample_id"), "class": e.leak_class,
                                     "reason": e.leak_reason, "patch": e.row.get("patch")}) + "\n")


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
