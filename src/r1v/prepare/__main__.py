"""``python -m r1v.prepare``: convert releases, check overlap, draw and rebuild the training mix.

Examples::

    python -m r1v.prepare video-holmes --src data/Video-Holmes/train_Video-Holmes.json \\
        --out data/Video-Holmes/video_holmes_train.json
    python -m r1v.prepare mix --config data_configs/video_r1_4k_mix.yaml --seed 42 \\
        --eval videoholmes=data/eval/Video-Holmes/test_Video-Holmes.json \\
        --out data/mix4k.jsonl --manifest data/mix4k.manifest.json
    python -m r1v.prepare rebuild --manifest data/mix4k.manifest.json --out data/mix4k.jsonl

Each step prints a one-line summary; details (missing media, removed items) go to the report
JSON next to the output (``<out>.report.json``) or into the manifest.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# The command is where the layers meet: benchmark specs are read by the evaluation package's
# benchmark modules, which the core preparation package never imports itself.
from eval.registry import load_eval_set
from r1v.data import read_records
from r1v.jsonl import write_jsonl_atomic
from r1v.prepare.common import (
    ON_MISSING, MissingMediaError, PrepareReport, is_done, relative_media_path, report_path,
)
from r1v.prepare.mix import draw_mix, rebuild
from r1v.prepare.overlap import build_index, filter_overlap
from r1v.prepare.sources import CONVERTERS, DUPLICATE_IDS, convert

logger = logging.getLogger("r1v.prepare")

EVAL_HELP = ("evaluation set, repeatable: NAME[:SUBSET]=PATH with NAME a benchmark of eval.registry "
             "(e.g. videoholmes=.../test_Video-Holmes.json), or a bare JSON/JSONL PATH")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--on-missing", choices=ON_MISSING, default="error",
                   help="missing media: 'error' (default, lists them all) or 'skip' (leave the items out, "
                        "list them in the report)")
    p.add_argument("--force", action="store_true", help="redo a step whose outputs already exist")


def _overlap_flags(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--eval", action="append", default=[], required=required, metavar="SPEC", help=EVAL_HELP)
    p.add_argument("--no-content-hash", action="store_true",
                   help="skip the SHA-256 comparison of equal-size media files")
    p.add_argument("--min-question-words", type=int, default=1,
                   help="questions shorter than this never match on text alone (default 1: all)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m r1v.prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (source, _, default_dir) in CONVERTERS.items():
        p = sub.add_parser(name, help=f"convert the {name} release to Video-R1 records ({source}:<id> ids)")
        p.add_argument("--src", required=True, help="the release's annotation file (JSON list or JSONL)")
        p.add_argument("--out", required=True, help="output JSONL; media paths become relative to its folder")
        p.add_argument("--media-root", help="folder the release's media paths resolve against (default: --src's folder)")
        p.add_argument("--video-dir", default=None,
                       help=f"video folder under --media-root (default {default_dir!r})" if default_dir else argparse.SUPPRESS)
        p.add_argument("--duplicate-ids", choices=DUPLICATE_IDS, default="error",
                       help="an id repeated in the release: 'error' (default, lists them) or 'rename' "
                            "(keep every item as <id>#1, <id>#2, ..., listed in the report)")
        _common(p)
    p = sub.add_parser("overlap", help="drop items of a Video-R1 JSON/JSONL overlapping eval sets")
    p.add_argument("--data", required=True, help="training records (Video-R1 schema)")
    p.add_argument("--data-root", help="folder their paths resolve against (default: the file's folder)")
    p.add_argument("--out", required=True, help="output JSONL of the kept records")
    _overlap_flags(p, required=True)
    p.add_argument("--force", action="store_true", help="redo when the output already exists")
    p = sub.add_parser("mix", help="draw a mixture's training mix and write its manifest")
    p.add_argument("--config", required=True, help="mixture YAML (e.g. data_configs/video_r1_4k_mix.yaml)")
    p.add_argument("--seed", type=int, default=42, help="sampling seed (entry i uses seed (SEED, i))")
    p.add_argument("--base-dir", help="folder relative YAML paths resolve against (default: cwd)")
    p.add_argument("--out", required=True, help="output JSONL of the drawn records")
    p.add_argument("--manifest", required=True, help="output manifest JSON")
    _overlap_flags(p, required=False)
    _common(p)
    p = sub.add_parser("rebuild", help="rebuild the records a manifest lists")
    p.add_argument("--manifest", required=True, help="manifest JSON written by 'mix'")
    p.add_argument("--out", required=True, help="output JSONL")
    p.add_argument("--source", action="append", default=[], metavar="NAME=JSON",
                   help="where source NAME's file lives on this machine (repeatable)")
    p.add_argument("--config", help="mixture YAML to locate the sources (env vars expanded here)")
    p.add_argument("--base-dir", help="folder relative YAML paths resolve against (default: cwd)")
    _common(p)
    return parser


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"{flag} {value!r}: expected NAME=PATH")
        out[name] = path
    return out


def run_overlap(args) -> PrepareReport:
    out = Path(args.out)
    report = PrepareReport(step="overlap", inputs=[args.data, *args.eval], output=str(out))
    if not args.force and is_done(out, report_path(out)):
        report.notes["skipped"] = "done"
        return report
    records = read_records(args.data, args.data_root, on_error="raise", check_media=False).records
    kept, report.removed = filter_overlap(records, build_index(args.eval, load_eval_set), not args.no_content_hash,
                                          args.min_question_words, Path(args.data).name)
    report.n_read = len(records)
    rows = ({**{k: v for k, v in r.items() if k != "rel_path"}, "path": relative_media_path(r["path"], out)}
            for r in kept)
    report.n_written = write_jsonl_atomic(rows, out)
    report.save(report_path(out))
    return report


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        if args.command in CONVERTERS:
            report = convert(args.command, args.src, args.out, args.media_root, args.on_missing,
                             args.video_dir, args.force, args.duplicate_ids)
        elif args.command == "overlap":
            report = run_overlap(args)
        elif args.command == "mix":
            report = draw_mix(args.config, args.out, args.manifest, args.seed, args.base_dir, args.eval,
                              args.on_missing, not args.no_content_hash, args.min_question_words, args.force,
                              load_eval_set=load_eval_set)
        else:
            report = rebuild(args.manifest, args.out, _pairs(args.source, "--source"), args.config,
                             args.base_dir, args.on_missing, args.force)
    except (MissingMediaError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.summary() if not report.notes.get("skipped") else f"{report.step}: {report.output} already done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
