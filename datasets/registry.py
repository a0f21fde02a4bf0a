"""``build_dataset``: the one entry point from ``args.dataset_file`` to a training or evaluation dataset.

Options read from ``args`` (``getattr`` with these defaults): ``ytvos_path``, ``mevis_path``,
``davis_path``, ``a2d_path``, ``jhmdb_path``, ``coco_path`` (required by the datasets that use them),
``num_frames`` 5, ``max_size`` 640, ``masks`` True (RefCOCO image mode), ``clip_reverse_prob`` 0.0,
``photometric_after_resize`` False, ``legacy_caption_flip`` False, ``a2d_clips_dir`` "clips320H",
``refcoco_min_short_side`` 0. ``max_skip`` and ``binary`` are accepted by the parser and unused here.
"""
from functools import partial
from typing import Callable, Dict, Optional

from torch.utils.data import Dataset

from rvos.datasets import a2d, concat, davis, jhmdb, mevis, refexp, ytvos
from rvos.datasets.prompt_frames import enable_prompt_frames, uses_prompt_frames

BUILDERS: Dict[str, Callable[[str, object], Dataset]] = {
    "ytvos": ytvos.build,
    "davis": davis.build,
    "mevis": mevis.build,
    "a2d": a2d.build,
    "jhmdb": jhmdb.build,
    **{name: partial(refexp.build, name) for name in refexp.REFCOCO_NAMES},
    "all": concat.build_all_refcoco,
    "joint": concat.build_joint,
    "ytvos_joint_davis": concat.build_ytvos_joint_davis,
}


def build_dataset(image_set: str, args, dataset_file: Optional[str] = None) -> Dataset:
    """The ``image_set`` ('train', 'val', or a RefCOCO split name) of ``dataset_file``
    (default ``args.dataset_file``): one of ``BUILDERS``.

    Every sample is ``(clip [T, 3, H, W] float, target dict)``; see each dataset class for its target. Training
    sets of a variant that needs prompt frames (TFVOS) give them (``datasets.prompt_frames``).
    """
    name = dataset_file or args.dataset_file
    if name not in BUILDERS:
        raise ValueError(f"dataset {name!r} not supported; expected one of {sorted(BUILDERS)}")
    dataset = BUILDERS[name](image_set, args)
    if image_set == "train" and uses_prompt_frames(args):
        enable_prompt_frames(dataset, args.model, getattr(args, "tfvos_independent_prompt_transform", False))
    return dataset
