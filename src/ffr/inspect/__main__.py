"""CLI of the patch inspector; see `ffr.inspect` for inputs and outputs.

Prints the written page's path on the last line of stdout. Exit status 0 on success,
2 for unusable inputs (named on stderr).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

from ffr.inspect import find_inputs
from ffr.inspect.page import build_report


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ffr.inspect",
                                description="One static HTML page showing every teacher request of a run.")
    p.add_argument("inputs", nargs="+", metavar="RUN_DIR_OR_LOG",
                   help="a training output_dir and/or patch-log JSONL files (trainer, ffr.mine, ffr.audit inputs)")
    p.add_argument("--out", default=None,
                   help="HTML path (default: RUN_DIR/patch_inspector.html for a run folder, else "
                        "./patch_inspector.html); thumbnails go to <stem>_files/ beside it")
    p.add_argument("--no-frames", action="store_true", help="do not decode videos (cards show no thumbnails)")
    p.add_argument("--thumb-size", type=int, default=192, help="longer side of a thumbnail in pixels")
    p.add_argument("--title", default=None, help="page title")
    args = p.parse_args(argv)
    if args.thumb_size < 16:
        p.error(f"--thumb-size must be >= 16, got {args.thumb_size}")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        inputs = find_inputs(args.inputs)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    first = Path(args.inputs[0])
    out = Path(args.out) if args.out else (first if first.is_dir() else Path(".")) / "patch_inspector.html"
    if out.is_dir():
        print(f"error: --out {out} is a folder; give the HTML file's path", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        report = build_report(inputs, out, frames=not args.no_frames, max_side=args.thumb_size, title=args.title)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{report.requests} requests, page {report.html_bytes / 1e6:.2f} MB, {report.thumbnails} thumbnails "
          f"in {report.files}, built in {report.seconds:.1f} s")
    print(f"wrote {report.html.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
