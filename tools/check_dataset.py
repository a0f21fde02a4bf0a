"""Check a dataset root against the on-disk spec of its benchmark and report every problem.

Examples::

    python tools/check_dataset.py --dataset_file ytvos --ytvos_path data/ref-youtube-vos
    python tools/check_dataset.py --dataset_file mevis --mevis_path data/mevis --split valid_u
    python tools/check_dataset.py --dataset_file refcoco+ --coco_path data/coco --no_decode

Prints the counts per split, then one line per problem (``<file>: <what is wrong>``).
Exit status: 0 when the root is clean, 1 when problems were found, 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rvos.datasets.checks import CHECKERS, inspect_dataset  # noqa: E402

PATH_OPTIONS = {  # dataset_file -> (path option, default, as in ReferFormer's opts.py)
    "ytvos": ("ytvos_path", "data/ref-youtube-vos"),
    "davis": ("davis_path", "data/ref-davis"),
    "mevis": ("mevis_path", "data/mevis"),
    "a2d": ("a2d_path", "data/a2d_sentences"),
    "jhmdb": ("jhmdb_path", "data/jhmdb_sentences"),
    "refcoco": ("coco_path", "data/coco"),
    "refcoco+": ("coco_path", "data/coco"),
    "refcocog": ("coco_path", "data/coco"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_file", required=True, choices=sorted(CHECKERS))
    for option, default in sorted(set(PATH_OPTIONS.values())):
        parser.add_argument(f"--{option}", type=Path, default=Path(default))
    parser.add_argument("--split", default=None, help="check one split only (default: all)")
    parser.add_argument("--no_decode", action="store_true", help="only check that files exist (fast)")
    parser.add_argument("--workers", type=int, default=4, help="threads decoding files")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    root = getattr(args, PATH_OPTIONS[args.dataset_file][0])
    try:
        report = inspect_dataset(args.dataset_file, root, args.split, decode=not args.no_decode, workers=args.workers)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.dataset_file} at {root}")
    for split, counts in report.counts.items():
        print(f"  {split}: " + ", ".join(f"{key} {value}" for key, value in counts.items()))
    for problem in report.problems:
        print(problem)
    print(f"{len(report.problems)} problem(s)" if report.problems else "clean: no problems found")
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
