"""Check a submission zip against the dataset before uploading it.

    python tools/check_submission.py out/submission_ytvos_valid.zip --dataset_file ytvos --ytvos_path data/ref-youtube-vos
    python tools/check_submission.py out/submission_mevis_valid.zip --dataset_file mevis --mevis_path data/mevis --split valid

Checks that every video, expression and frame of the split is present under the server's layout
(Ref-YouTube-VOS: ``Annotations/<video>/<exp_id>/<frame>.png``, the valid videos without the test ones;
MeViS: ``<video>/<exp_id>/<frame>.png`` at the archive root), that every PNG is single-channel with
values {0, 255} at its frame's size, and that nothing else is in the archive. Exits 0 only when the zip
is clean; otherwise lists the problems and exits 1.
"""
import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rvos.predict import BENCHMARKS  # noqa: E402
from rvos.predict.submission import check_submission, summarize_problems  # noqa: E402

logger = logging.getLogger("check_submission")

SUBMISSION_DATASETS = ("ytvos", "mevis")
DEFAULT_ROOTS = {"ytvos": "data/ref-youtube-vos", "mevis": "data/mevis"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("zip", type=Path, help="the submission zip")
    parser.add_argument("--dataset_file", required=True, choices=SUBMISSION_DATASETS)
    parser.add_argument("--ytvos_path", default=DEFAULT_ROOTS["ytvos"], help="Ref-YouTube-VOS root")
    parser.add_argument("--mevis_path", default=DEFAULT_ROOTS["mevis"], help="MeViS root")
    parser.add_argument("--split", default="valid", help="ytvos: valid or test; mevis: valid or test (default: valid)")
    parser.add_argument("--max_listed", type=int, default=50, help="problems printed (all are counted)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    benchmark = BENCHMARKS[args.dataset_file](args)
    jobs = benchmark.jobs()
    problems = check_submission(args.zip, benchmark.submission_entries(jobs, predictions=False))
    if problems:
        logger.error("%s: %d problem(s):\n%s", args.zip, len(problems), summarize_problems(problems, args.max_listed))
        return 1
    expressions = sum(len(job.expressions) for job in jobs)
    logger.info("%s is a complete %s %s submission: %d videos, %d expressions", args.zip, args.dataset_file,
                args.split, len(jobs), expressions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
