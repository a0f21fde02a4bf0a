"""Ref-DAVIS17 training clips: the converted YTVOS layout read by the Ref-YouTube-VOS loader
(DATASETS.md §2.3) with the 78-category DAVIS vocabulary, under ``args.davis_path``."""
from pathlib import Path

from rvos.datasets.categories import davis_category_dict
from rvos.datasets.ytvos import YTVOSDataset, build_expression_split


def build(image_set: str, args) -> YTVOSDataset:
    """Ref-DAVIS17 train split (``<davis_path>/train`` + ``meta_expressions/train``)."""
    return build_expression_split(Path(args.davis_path), image_set, args, davis_category_dict, "Ref-DAVIS17")
