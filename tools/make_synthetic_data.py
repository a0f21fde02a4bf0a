"""Write a synthetic dataset in a benchmark's real on-disk layout.

Examples::

    python tools/make_synthetic_data.py --dataset ytvos --root data/synthetic/ref-youtube-vos --seed 0
    python tools/make_synthetic_data.py --dataset mevis --root data/synthetic/mevis --num_videos 20 --num_frames 30
    python tools/make_synthetic_data.py --dataset video --root data/synthetic/video

Size options left out keep the miniature defaults of DATASETS.md §8 (see docs/SYNTHETIC.md).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rvos.datasets.synthetic import DATASET_NAMES, make_dataset  # noqa: E402

SIZE_OPTIONS = ("num_videos", "num_train_videos", "num_valid_videos", "num_test_videos", "num_valid_u_videos",
                "num_images", "num_frames", "min_frames", "height", "width")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=DATASET_NAMES)
    parser.add_argument("--root", required=True, type=Path, help="folder to write the dataset into")
    parser.add_argument("--seed", type=int, default=0)
    for option in SIZE_OPTIONS:
        parser.add_argument(f"--{option}", type=int, default=None)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sizes = {option: getattr(args, option) for option in SIZE_OPTIONS if getattr(args, option) is not None}
    try:
        root = make_dataset(args.dataset, args.root, seed=args.seed, **sizes)
    except (TypeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
