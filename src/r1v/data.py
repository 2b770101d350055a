"""Video-R1 training records: loading, validation, YAML mixtures.

A record (shared data contract) is one dict:
    problem_id (int | str), problem (str), data_type ("video" | "image"),
    problem_type (one of PROBLEM_TYPES), options (list[str]; [], null or absent -> []),
    solution (str, usually "<answer>...</answer>"), path (media file, relative to a data
    root or absolute), data_source (str, optional), evidence (dict, optional:
    time_span [t0, t1] seconds, region [x0, y0, x1, y1] relative or None, error_type,
    markers, guidance).
Extra keys (e.g. Video-R1's "process") are kept untouched.

`load_records` returns copies of the records with `path` made absolute (resolved
against data_root, default the file's folder) and the original kept in `rel_path`.
Bad input raises ValueError / FileNotFoundError whose message names the file, the line
(JSONL) or item index (JSON list) and the problem_id; with on_error="skip" the record
is logged and counted instead (see `read_records` for the count). Besides the schema,
a record must be scoreable: a multiple-choice answer is one of its options' letters
(options lettered "A. ...", "B. ...", ... in order), a numerical / regression answer
parses as a number (the reward's strict parser), and a problem_id appears once per file
and once per mixture (teacher requests and logs identify a sample by it).

Mixtures (`load_mixture`) are YAML files in data_configs/:
    datasets:
      - json_path: ${VIDEO_R1_DATA:-data/Video-R1}/Video-R1-260k.json
        data_root: ${VIDEO_R1_DATA:-data/Video-R1}      # optional
        sampling_strategy: random:2000                  # optional, default "all"
Path values may use ${VAR} / ${VAR:-default} (default also used when VAR is empty);
relative paths resolve against base_dir (default: the current directory, i.e. the
repository root for the launch scripts).
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from r1v.answers import extract_answer, parse_number_strict

logger = logging.getLogger(__name__)

PROBLEM_TYPES = frozenset({"multiple choice", "numerical", "OCR", "free-form", "regression"})
DATA_TYPES = frozenset({"video", "image"})
ERROR_TYPES = frozenset({"temporal", "spatial", "misconception"})
REQUIRED_FIELDS = ("problem_id", "problem", "data_type", "problem_type", "solution", "path")
MIXTURE_KEYS = frozenset({"json_path", "data_root", "sampling_strategy", "name"})
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_STRATEGY = re.compile(r"^(first|end|random):(\d+(?:\.\d+)?)(%?)$")
# An option's letter label: "A. text", "A) text", "A: text" or "(A) text".
_OPTION_LABEL = re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])[.):])")


@dataclass
class LoadResult:
    """Records that loaded (with each one's "file:line" in `locations`), and how many were skipped."""

    records: list[dict] = field(default_factory=list)
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)


def _check_str_list(value: Any, name: str) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name}: expected a list of strings, got {value!r}")


def _check_evidence(ev: Any) -> None:
    """Validate the optional evidence annotation; raises ValueError naming the field."""
    if not isinstance(ev, dict):
        raise ValueError(f"evidence: expected a dict, got {type(ev).__name__}")
    span = ev.get("time_span")
    if span is not None:
        if (not isinstance(span, (list, tuple)) or len(span) != 2
                or not all(isinstance(t, (int, float)) and math.isfinite(t) for t in span)
                or not 0 <= span[0] <= span[1]):
            raise ValueError(f"evidence.time_span: expected [t0, t1] seconds with 0 <= t0 <= t1, got {span!r}")
    region = ev.get("region")
    if region is not None:
        if (not isinstance(region, (list, tuple)) or len(region) != 4
                or not all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in region)
                or not (region[0] < region[2] and region[1] < region[3])):
            raise ValueError(f"evidence.region: expected relative [x0, y0, x1, y1] in [0, 1] "
                             f"with x0 < x1, y0 < y1, got {region!r}")
    if "error_type" in ev and ev["error_type"] not in ERROR_TYPES:
        raise ValueError(f"evidence.error_type: must be one of {sorted(ERROR_TYPES)}, got {ev['error_type']!r}")
    if "markers" in ev:
        _check_str_list(ev["markers"], "evidence.markers")
    if "guidance" in ev and not isinstance(ev["guidance"], str):
        raise ValueError(f"evidence.guidance: expected a string, got {ev['guidance']!r}")


def validate_record(rec: Any) -> None:
    """Raise ValueError (naming the field) unless `rec` follows the record contract above."""
    if not isinstance(rec, dict):
        raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in rec]
    if missing:
        raise ValueError(f"missing field(s) {missing}")
    pid = rec["problem_id"]
    if isinstance(pid, bool) or not isinstance(pid, (int, str)):
        raise ValueError(f"problem_id: expected int or str, got {pid!r}")
    for key in ("problem", "solution", "path"):
        if not isinstance(rec[key], str) or not rec[key].strip():
            raise ValueError(f"{key}: expected a non-empty string, got {rec[key]!r}")
    if rec["data_type"] not in DATA_TYPES:
        raise ValueError(f"data_type: must be one of {sorted(DATA_TYPES)}, got {rec['data_type']!r}")
    if rec["problem_type"] not in PROBLEM_TYPES:
        raise ValueError(f"problem_type: must be one of {sorted(PROBLEM_TYPES)}, got {rec['problem_type']!r}")
    options = rec.get("options") or []  # absent or null: no options (free-form, OCR, ...)
    _check_str_list(options, "options")
    if rec["problem_type"] == "multiple choice" and len(options) < 2:
        raise ValueError(f"options: a multiple-choice record needs at least 2 options, got {options!r}")
    if rec.get("evidence") is not None:
        _check_evidence(rec["evidence"])
    _check_answer(rec["problem_type"], options, rec["solution"])


def option_letters(options: list[str]) -> list[str]:
    """The letter label of each option ("A. x" -> "A"); ValueError unless they run A, B, C, ... in order."""
    letters = []
    for i, option in enumerate(options):
        m = _OPTION_LABEL.match(option)
        expected = chr(ord("A") + i)
        if m is None or (m.group(1) or m.group(2)) != expected:
            raise ValueError(f"options: option {i + 1} {option!r} is not lettered {expected!r} "
                             f"(expected 'A. ...', 'B. ...', ... in order)")
        letters.append(expected)
    return letters


def _check_answer(problem_type: str, options: list[str], solution: str) -> None:
    """The gold answer must be one the reward can award: an option letter, or a parseable number."""
    gold = extract_answer(solution)
    if problem_type == "multiple choice":
        letters = option_letters(options)
        if gold not in letters:
            raise ValueError(f"solution: multiple-choice answer {gold!r} is not one of the options' letters {letters}")
    elif problem_type in ("numerical", "regression") and parse_number_strict(gold) is None:
        raise ValueError(f"solution: {problem_type} answer {gold!r} does not parse as a number")


def iter_json_records(path: Path, lines: bool = False) -> Iterator[tuple[str, Any]]:
    """Yield (location, parsed object or the JSONDecodeError) for each record of a file.

    A file whose first non-blank character is '[' is a JSON list (Video-R1's .json);
    anything else is JSONL. Location is "file:line" (JSONL) or "file[item i]" (JSON).
    Shared by every reader of project JSON/JSONL files (data, prepare, traces, mining, the
    teacher cache, patch logs), so they all name a bad line the same way; use `json_records`
    to raise on the first bad line.

    lines: the file is JSONL whatever its first character (an append-only log), and a line
    that is not UTF-8 is a bad line like any other (yielded as a JSONDecodeError, so a reader
    that skips bad lines can skip it) instead of a ValueError about the whole file.
    Writing is `r1v.jsonl`.
    """
    data = path.read_bytes()
    if lines:
        for lineno, raw in enumerate(data.split(b"\n"), start=1):
            if raw.strip():
                yield f"{path}:{lineno}", _parse_line(raw)
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:  # name the file and line, not just a byte position
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{path}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})") from exc
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from exc
        except RecursionError as exc:
            raise ValueError(f"{path}: invalid JSON: nested too deeply to read") from exc
        for i, item in enumerate(items):
            yield f"{path}[item {i}]", item
        return
    for lineno, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            yield f"{path}:{lineno}", _parse_line(line)


def _parse_line(line: str | bytes) -> Any:
    """The JSON value of one JSONL line, or the JSONDecodeError saying why it has none."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return json.JSONDecodeError(f"not UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1})",
                                        "", 0)
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        return exc
    except RecursionError:  # reported like any other bad line (skippable where lines are)
        return json.JSONDecodeError("nested too deeply to read", line, 0)


def json_records(path: Path) -> Iterator[tuple[str, Any]]:
    """`iter_json_records`, raising ValueError("<file:line>: invalid JSON: ...") at a bad line."""
    for where, obj in iter_json_records(Path(path)):
        if isinstance(obj, json.JSONDecodeError):
            raise ValueError(f"{where}: invalid JSON: {obj.msg}") from obj
        yield where, obj


def _resolve(rec: dict, root: Path, check_media: bool) -> dict:
    """Copy of rec with an absolute `path` (original in `rel_path`) and default fields."""
    out = dict(rec)
    out["rel_path"] = rec["path"]
    media = Path(os.path.expanduser(rec["path"]))
    media = media if media.is_absolute() else root / media
    out["path"] = os.path.normpath(str(media))
    out["options"] = list(rec.get("options") or [])
    if check_media and not os.path.isfile(out["path"]):
        raise FileNotFoundError(f"media file not found: {out['path']}")
    return out


def read_records(path, data_root=None, on_error: str = "raise", check_media: bool = True) -> LoadResult:
    """Load and validate a Video-R1 JSON list or JSONL file; see the module docstring.

    on_error: "raise" (first bad record raises ValueError / FileNotFoundError naming
    file, line or item, and problem_id) or "skip" (log a warning, count it, go on).
    check_media: also require every media file to exist.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    root = Path(data_root) if data_root is not None else path.parent
    result = LoadResult()
    seen: dict[str, str] = {}  # str(problem_id) -> where it was first kept
    for where, raw in iter_json_records(path):
        pid = raw.get("problem_id") if isinstance(raw, dict) else None
        try:
            if isinstance(raw, json.JSONDecodeError):
                raise ValueError(f"invalid JSON: {raw.msg} (column {raw.colno})")
            validate_record(raw)
            _check_unique(pid, seen)
            result.records.append(_resolve(raw, root, check_media))
            result.locations.append(where)
            seen[str(pid)] = where
        except (ValueError, FileNotFoundError) as exc:
            _record_error(result, on_error, f"{where} (problem_id={pid!r}): {exc}", exc)
    if result.skipped:
        logger.warning("%s: skipped %d bad record(s), kept %d", path, result.skipped, len(result.records))
    return result


def _check_unique(pid: Any, seen: dict[str, str]) -> None:
    # str(): 7 and "7" name the same sample in teacher request ids and logs.
    if str(pid) in seen:
        raise ValueError(f"problem_id repeats the record at {seen[str(pid)]}")


def _record_error(result: LoadResult, on_error: str, msg: str, exc: Exception) -> None:
    """Raise `msg` (as exc's type) in "raise" mode; else log it and count a skip."""
    if on_error == "raise":
        raise type(exc)(msg) from exc
    logger.warning("skipping record: %s", msg)
    result.skipped += 1
    result.errors.append(msg)


def load_records(path, data_root=None, on_error: str = "raise", check_media: bool = True) -> list[dict]:
    """The records of `read_records` (use that function to get the skipped count)."""
    return read_records(path, data_root, on_error, check_media).records


def expand_env(value: str, where: str = "value") -> str:
    """Expand ${VAR} and ${VAR:-default} (default when VAR is unset or empty) and a leading ~.

    Raises ValueError naming `where` for ${VAR} without a default when VAR is unset.
    """
    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        got = os.environ.get(name)
        if got:
            return got
        if default is not None:
            return default
        if got is not None:  # set but empty, no default: empty is what the user asked for
            return got
        raise ValueError(f"{where}: environment variable {name} is not set and has no default in {value!r}")
    return os.path.expanduser(_ENV_REF.sub(sub, value))


def sample_records(records: list, strategy: str, rng: random.Random, where: str = "sampling_strategy") -> list:
    """Apply a mixture sampling strategy: "all", "first:N", "end:N", "random:N", N may be "P%".

    P% keeps floor(len * P / 100) records (at least 1 of a non-empty file); N larger than
    the file keeps everything (with a warning). random:N draws without replacement and
    keeps the drawn records in file order.
    """
    strategy = str(strategy).strip()
    if strategy == "all":
        return list(records)
    m = _STRATEGY.match(strategy)
    if not m:
        raise ValueError(f"{where}: unknown sampling_strategy {strategy!r}; expected 'all', 'first:N', "
                         f"'end:N', 'random:N' (N an integer or a percentage like '10%')")
    how, number, pct = m.group(1), float(m.group(2)), m.group(3) == "%"
    if pct:
        if not 0 < number <= 100:
            raise ValueError(f"{where}: percentage must be in (0, 100], got {strategy!r}")
        n = max(1, int(len(records) * number / 100)) if records else 0
    else:
        if number != int(number):
            raise ValueError(f"{where}: count must be an integer, got {strategy!r}")
        n = int(number)
    if n > len(records):
        logger.warning("%s: %s asks for %d records but only %d exist; keeping all", where, strategy, n, len(records))
        n = len(records)
    if how == "first":
        return list(records[:n])
    if how == "end":
        return list(records[len(records) - n:])
    keep = sorted(rng.sample(range(len(records)), n))
    return [records[i] for i in keep]


def _mixture_entries(yaml_path: Path) -> list[dict]:
    with open(yaml_path, encoding="utf-8") as fh:
        try:
            cfg = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ValueError(f"{yaml_path}: invalid YAML: {exc}") from exc
    entries = cfg.get("datasets") if isinstance(cfg, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{yaml_path}: expected a top-level 'datasets:' list with at least one entry")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "json_path" not in entry:
            raise ValueError(f"{yaml_path}: datasets[{i}] must be a mapping with a 'json_path'")
        unknown = set(entry) - MIXTURE_KEYS
        if unknown:
            raise ValueError(f"{yaml_path}: datasets[{i}] has unknown key(s) {sorted(unknown)}; "
                             f"allowed: {sorted(MIXTURE_KEYS)}")
    return entries


def read_mixture(yaml_path, base_dir=None, on_error: str = "raise", seed: int = 42,
                 check_media: bool = True) -> LoadResult:
    """Load every dataset of a YAML mixture, apply its sampling strategy, concatenate.

    Sampling happens after validation (skipped records never count towards N). random:N
    of entry i uses a generator seeded by (seed, i), so the mixture is reproducible.
    An entry that yields no record (empty file, every record skipped, ``random:0``) is a
    ValueError naming it. A problem_id drawn by two entries raises (or, in skip mode, the
    later copy is dropped and counted), naming both file:line locations.
    """
    yaml_path = Path(yaml_path)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    total = LoadResult()
    seen: dict[str, str] = {}
    for i, entry in enumerate(_mixture_entries(yaml_path)):
        where = f"{yaml_path}: datasets[{i}]"
        json_path = base / expand_env(str(entry["json_path"]), f"{where}.json_path")
        root = entry.get("data_root")
        root = base / expand_env(str(root), f"{where}.data_root") if root is not None else None
        part = read_records(json_path, root, on_error, check_media)
        strategy = entry.get("sampling_strategy", "all")
        rng = random.Random(f"{seed}:{i}")
        keep = sample_records(list(range(len(part.records))), strategy, rng, f"{where}.sampling_strategy")
        if not keep:
            raise ValueError(f"{where}: {json_path} gave 0 records ({len(part.records)} valid, "
                             f"{part.skipped} skipped, sampling_strategy {strategy!r}); "
                             f"fix the file or remove the entry")
        logger.info("%s: %s -> %d of %d records", where, json_path, len(keep), len(part.records))
        for j in keep:
            rec, loc = part.records[j], part.locations[j]
            try:
                _check_unique(rec["problem_id"], seen)
            except ValueError as exc:
                _record_error(total, on_error, f"{loc} (problem_id={rec['problem_id']!r}): {exc} "
                                               f"(drawn by another entry of {yaml_path})", exc)
                continue
            seen[str(rec["problem_id"])] = loc
            total.records.append(rec)
            total.locations.append(loc)
        total.skipped += part.skipped
        total.errors.extend(part.errors)
    return total


def load_mixture(yaml_path, base_dir=None, on_error: str = "raise", seed: int = 42,
                 check_media: bool = True) -> list[dict]:
    """The records of `read_mixture` (use that function to get the skipped count)."""
    return read_mixture(yaml_path, base_dir, on_error, seed, check_media).records
