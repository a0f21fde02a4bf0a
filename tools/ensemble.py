"""Fuse several models' predictions by a recipe: sources, chained rounds, one output (docs/ENSEMBLE.md).

    python tools/ensemble.py configs/ensemble/test_swap_1.yaml --output out/swap1
    python tools/ensemble.py my_recipe.yaml --workers 4

Videos are processed one at a time (optionally in ``--workers`` processes) and written as they finish: a rerun
skips the finished videos. Writes ``<output>/Annotations/``, ``submission.zip``, ``key_frames.json`` (when a round
selects key frames) and ``abstentions.json``. A failed video is listed in ``failures.json`` and skipped; the exit
status is then 1 (0: every video written; 2: the recipe is wrong, nothing was done).
"""
import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rvos.ensemble.recipe import load_recipe, RecipeError  # noqa: E402
from rvos.ensemble.runner import run_recipe  # noqa: E402
from rvos.ensemble.sources import SourceError  # noqa: E402

logger = logging.getLogger("ensemble")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", type=Path, help="the recipe (YAML)")
    parser.add_argument("--root", type=Path, default=None, help="folder the recipe's paths are relative to "
                        "(default: the recipe's own root, relative to the recipe file)")
    parser.add_argument("--output", type=Path, default=None, help="output folder (default: the recipe's output)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes, one video each at a time")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        recipe = load_recipe(args.recipe, root=args.root, output=args.output)
        report = run_recipe(recipe, workers=max(1, args.workers), progress=not args.no_progress)
    except (RecipeError, SourceError) as err:
        logger.error("%s", err)
        return 2
    if report.failures:
        logger.error("%d of %d videos failed: see %s", len(report.failures), report.videos,
                     recipe.output / "failures.json")
        return 1
    logger.info("%d videos fused (%d done before this run), %d abstentions: %s", report.videos, report.done_before,
                len(report.abstained), report.zip_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
