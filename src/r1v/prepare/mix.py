"""Draw a training mix from a YAML mixture, write its manifest, rebuild a mix from a manifest.

The draw reads each dataset of the mixture (``data_configs/video_r1_4k_mix.yaml``: names,
files, ``sampling_strategy``), reports missing media, drops items overlapping the given eval
sets (``r1v.prepare.overlap``) and then samples with ``r1v.data.sample_records`` seeded by
``(seed, entry index)`` exactly as ``r1v.data.read_mixture`` does, so removed items never
count towards N. Output: the mix as JSONL (paths relative to its folder) and a manifest::

    {"format": "r1v-mix-manifest/1", "seed": 42, "config": "...",
     "sources": {"video_r1": {"json_path", "data_root", "sha256", "sampling_strategy",
                              "n_records", "n_available", "n_drawn"}, ...},
     "eval_sets": [...], "overlap_removed": [...], "missing_media": [...],
     "items": [{"source", "original_id", "problem_id", "path", "seed"}, ...]}

``original_id`` is the item's key in its source file (``r1v.prepare.common.item_keys``) and
``path`` its media path as written in that file. ``rebuild`` finds every item again by
(source, original_id), checks its media path, and writes the same records.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path

import yaml
from tqdm import tqdm

from r1v.data import expand_env, read_records, sample_records
from r1v.jsonl import write_jsonl_atomic
from r1v.prepare.common import (
    MissingMediaError, PrepareReport, check_on_missing, is_done, item_keys, relative_media_path,
    write_json_atomic,
)
from r1v.prepare.overlap import EvalSetLoader, build_index, filter_overlap, load_plain_eval_set

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = "r1v-mix-manifest/1"


@dataclass
class MixEntry:
    name: str
    json_path: Path
    data_root: Path | None
    strategy: str


def read_mix_config(yaml_path, base_dir=None) -> list[MixEntry]:
    """The datasets of a mixture YAML (``r1v.data`` format); every entry needs a unique ``name``."""
    yaml_path = Path(yaml_path)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    with open(yaml_path, encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh)
    entries = cfg.get("datasets") if isinstance(cfg, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{yaml_path}: expected a top-level 'datasets:' list with at least one entry")
    out = []
    for i, entry in enumerate(entries):
        where = f"{yaml_path}: datasets[{i}]"
        if not isinstance(entry, dict) or "json_path" not in entry or "name" not in entry:
            raise ValueError(f"{where} must be a mapping with 'name' and 'json_path' (the manifest names sources)")
        root = entry.get("data_root")
        out.append(MixEntry(str(entry["name"]), base / expand_env(str(entry["json_path"]), f"{where}.json_path"),
                            base / expand_env(str(root), f"{where}.data_root") if root is not None else None,
                            str(entry.get("sampling_strategy", "all"))))
    names = [e.name for e in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{yaml_path}: dataset names must be unique, got {names}")
    return out


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _load_source(name: str, json_path: Path, data_root: Path | None, report: PrepareReport) -> list[dict]:
    """Records of one source (absolute ``path``, key in ``_key``); items with missing media are
    listed in the report and left out here (the caller decides whether that is an error)."""
    records = read_records(json_path, data_root, on_error="raise", check_media=False).records
    present = []
    for rec, key in zip(records, item_keys(records)):
        rec["_key"] = key
        if os.path.isfile(rec["path"]):
            present.append(rec)
        else:
            report.missing_media.append({"id": f"{name}:{key}", "path": rec["path"]})
    report.n_read += len(records)
    return present


def _output_record(rec: dict, out: Path) -> dict:
    clean = {k: v for k, v in rec.items() if k not in ("_key", "rel_path")}
    clean["path"] = relative_media_path(rec["path"], out)
    return clean


def _raise_missing(report: PrepareReport, where: str, on_missing: str, report_file: Path) -> None:
    if report.missing_media and on_missing == "error":
        report.save(report_file)
        raise MissingMediaError(where, [(m["id"], m["path"]) for m in report.missing_media])


def _check_same_draw(manifest: Path, settings: dict, config) -> None:
    """Refuse to call a finished draw "done" when it was drawn with other settings.

    A rerun with another --seed, another config (compared by content), other eval sets or other
    overlap / missing-media settings would otherwise keep the old draw and say "already done".
    Manifests written before ``settings`` existed are compared on seed, config path and eval sets.
    """
    data = read_manifest(manifest)
    before = data.get("settings")
    if not isinstance(before, dict):
        before = {"seed": data.get("seed"), "eval_sets": sorted(data.get("eval_sets") or [])}
        if os.path.abspath(str(data.get("config"))) != os.path.abspath(str(config)):
            before["config"], settings = data.get("config"), {**settings, "config": str(config)}
    changed = [f"{k} {before[k]!r} -> {settings[k]!r}" for k in before if k in settings and before[k] != settings[k]]
    if changed:
        raise ValueError(f"{manifest}: the finished draw used other settings ({'; '.join(changed)}); pass --force "
                         f"to redraw over it, or give another --out and --manifest")


def draw_mix(config, out, manifest, seed: int = 42, base_dir=None, eval_specs=(), on_missing: str = "error",
             content_hash: bool = True, min_question_words: int = 1, force: bool = False,
             load_eval_set: EvalSetLoader = load_plain_eval_set) -> PrepareReport:
    """Draw the mix of mixture YAML ``config``; write ``out`` (JSONL) and ``manifest`` (JSON).

    ``eval_specs`` are read by ``load_eval_set`` (default: bare JSON/JSONL paths only; benchmark
    specs need ``eval.registry.load_eval_set``, see ``r1v.prepare.overlap``).

    A finished draw (both files present) is kept unless ``force``, and only when it was drawn with
    the same settings (seed, config content, eval sets, overlap and missing-media options);
    otherwise ValueError names what changed. Missing media raise
    MissingMediaError listing all of them, or with ``on_missing="skip"`` are listed in the
    report and manifest. Overlapping items are removed before sampling.
    """
    check_on_missing(on_missing)
    out, manifest = Path(out), Path(manifest)
    report = PrepareReport(step="mix", inputs=[str(config)], output=str(out), notes={"seed": seed})
    settings = {"seed": seed, "config_sha256": file_sha256(config), "eval_sets": sorted(eval_specs),
                "content_hash": content_hash, "min_question_words": min_question_words, "on_missing": on_missing}
    if not force and is_done(out, manifest):
        _check_same_draw(manifest, settings, config)
        logger.info("mix already drawn (%s, %s); pass --force to redraw", out, manifest)
        report.notes["skipped"] = "done"
        return report
    entries = read_mix_config(config, base_dir)
    index = build_index(list(eval_specs), load_eval_set) if eval_specs else None
    loaded = [_load_source(e.name, e.json_path, e.data_root, report) for e in entries]
    _raise_missing(report, str(config), on_missing, manifest.with_name(manifest.name + ".report.json"))
    sources, items, chosen_all = {}, [], []
    for i, (entry, records) in enumerate(zip(entries, loaded)):
        if index is not None:
            records, removed = filter_overlap(records, index, content_hash, min_question_words, entry.name)
            report.removed.extend(removed)
        chosen = sample_records(records, entry.strategy, random.Random(f"{seed}:{i}"),
                                f"{config}: {entry.name}.sampling_strategy")
        sources[entry.name] = {"json_path": str(entry.json_path), "sha256": file_sha256(entry.json_path),
                               "data_root": str(entry.data_root) if entry.data_root else None,
                               "sampling_strategy": entry.strategy, "n_available": len(records),
                               "n_drawn": len(chosen)}
        items += [{"source": entry.name, "original_id": r["_key"], "problem_id": r["problem_id"],
                   "path": r["rel_path"], "seed": seed} for r in chosen]
        chosen_all += chosen
        logger.info("%s: drew %d of %d", entry.name, len(chosen), len(records))
    report.n_written = write_jsonl_atomic((_output_record(r, out) for r in chosen_all), out)
    write_json_atomic({"format": MANIFEST_FORMAT, "seed": seed, "config": str(config), "sources": sources,
                       "eval_sets": list(eval_specs), "settings": settings, "overlap_removed": report.removed,
                       "missing_media": report.missing_media, "items": items}, manifest)
    logger.info(report.summary())
    return report


def read_manifest(path) -> dict:
    with open(path, "rb") as fh:
        try:
            data = json.loads(fh.read().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise ValueError(f"{path}: not a JSON manifest ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: not a mix manifest (expected format {MANIFEST_FORMAT!r})")
    _check_manifest(data, path)
    return data


def _check_manifest(data: dict, path) -> None:
    """ValueError naming the manifest and the field / item of any structure ``rebuild`` cannot trust:
    sources not a mapping of {json_path, ...}, items not a list of {source, original_id, problem_id,
    path} of a listed source, or an item listed twice (it would be written twice)."""
    sources = data.get("sources")
    if not isinstance(sources, dict) or not sources:
        raise ValueError(f"{path}: 'sources' must be a non-empty mapping of source name to its file, "
                         f"got {type(sources).__name__}")
    for name, src in sources.items():
        if not isinstance(src, dict) or not isinstance(src.get("json_path"), str):
            raise ValueError(f"{path}: sources[{name!r}] must be a mapping with a 'json_path' string")
    items = data.get("items")
    if not isinstance(items, list):
        raise ValueError(f"{path}: 'items' must be a list, got {type(items).__name__}")
    first: dict[tuple, int] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"{path}: items[{i}] must be a mapping, got {type(item).__name__}")
        missing = [k for k in ("source", "original_id", "problem_id", "path") if item.get(k) in (None, "")]
        if missing:
            raise ValueError(f"{path}: items[{i}] has no {missing}")
        if not isinstance(item["source"], str) or item["source"] not in sources:
            raise ValueError(f"{path}: items[{i}]: source {item['source']!r} is not one of {sorted(sources)}")
        key = (item["source"], str(item["original_id"]))
        if key in first:
            raise ValueError(f"{path}: items[{i}] repeats items[{first[key]}] ({key[0]}:{key[1]})")
        first[key] = i


def _source_files(data: dict, overrides: dict[str, str], config, base_dir) -> dict[str, tuple[Path, Path | None]]:
    """Where each source lives now: ``overrides`` (name -> JSON), else ``config``, else the manifest."""
    files = {name: (Path(s["json_path"]), Path(s["data_root"]) if s.get("data_root") else None)
             for name, s in data["sources"].items()}
    if config is not None:
        files.update({e.name: (e.json_path, e.data_root) for e in read_mix_config(config, base_dir)
                      if e.name in files})
    for name, path in overrides.items():
        if name not in files:
            raise ValueError(f"--source {name}=...: the manifest has no source {name!r}; it has {sorted(files)}")
        files[name] = (Path(path), None)
    return files


def rebuild(manifest, out, overrides: dict[str, str] | None = None, config=None, base_dir=None,
            on_missing: str = "error", force: bool = False) -> PrepareReport:
    """Write the records a manifest lists, in its order, to ``out``; errors name the items.

    An item the source no longer has, or whose media path or problem_id differs from the
    manifest's, is an error (all such items are listed); missing media follow ``on_missing``. A source whose
    SHA-256 differs from the manifest's is logged (its listed items may still match).
    """
    check_on_missing(on_missing)
    out = Path(out)
    data = read_manifest(manifest)
    report = PrepareReport(step="rebuild", inputs=[str(manifest)], output=str(out))
    if not force and is_done(out):
        logger.info("%s already rebuilt; pass --force to redo", out)
        report.notes["skipped"] = "done"
        return report
    by_key: dict[str, dict[str, dict]] = {}
    for name, (json_path, root) in _source_files(data, overrides or {}, config, base_dir).items():
        records = read_records(json_path, root, on_error="raise", check_media=False).records
        by_key[name] = dict(zip(item_keys(records), records))
        if file_sha256(json_path) != data["sources"][name].get("sha256"):
            logger.warning("%s: %s differs from the file the manifest was drawn from", name, json_path)
    chosen, problems = [], []
    for item in tqdm(data["items"], desc="rebuild", unit="item"):
        rec = by_key.get(item["source"], {}).get(str(item["original_id"]))
        where = f"{item['source']}:{item['original_id']}"
        if rec is None:
            problems.append(f"{where}: not in the source file")
        elif rec["rel_path"] != item["path"] or rec["problem_id"] != item["problem_id"]:
            problems.append(f"{where}: media path / problem_id {rec['rel_path']!r} / {rec['problem_id']!r} "
                            f"!= manifest {item['path']!r} / {item['problem_id']!r}")
        elif not os.path.isfile(rec["path"]):
            report.missing_media.append({"id": where, "path": rec["path"]})
        else:
            chosen.append(rec)
    if problems:
        raise ValueError(f"{manifest}: {len(problems)} item(s) cannot be rebuilt: " + "; ".join(problems[:20]))
    report.n_read = len(data["items"])
    _raise_missing(report, str(manifest), on_missing, out.with_name(out.name + ".report.json"))
    report.n_written = write_jsonl_atomic((_output_record(r, out) for r in chosen), out)
    report.save(out.with_name(out.name + ".report.json"))
    logger.info(report.summary())
    return report
