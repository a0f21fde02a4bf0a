"""Datasets made of several benchmarks, concatenated (the mix is proportional to their lengths)."""
import logging

from torch.utils.data import ConcatDataset

from rvos.datasets import davis, refexp, ytvos

logger = logging.getLogger(__name__)

DAVIS_REPEATS_IN_YTVOS_JOINT = 5


def build_all_refcoco(image_set: str, args) -> ConcatDataset:
    """RefCOCO + RefCOCO+ + RefCOCOg images (T = 1): ``--dataset_file all`` pretraining."""
    return _concat([refexp.build(name, image_set, args) for name in refexp.REFCOCO_NAMES])


def build_joint(image_set: str, args) -> ConcatDataset:
    """RefCOCO/+/g pseudo-videos with T = ``num_frames`` plus Ref-YouTube-VOS train (``main_joint``)."""
    if image_set != "train":
        raise ValueError(f"the joint dataset is for training only (image_set {image_set!r})")
    parts = [refexp.build_sequences(name, image_set, args) for name in refexp.REFCOCO_NAMES]
    return _concat(parts + [ytvos.build(image_set, args)])


def build_ytvos_joint_davis(image_set: str, args) -> ConcatDataset:
    """SgMg's ``ytvos_joint_davis``: 5 copies of Ref-DAVIS17 train plus Ref-YouTube-VOS train."""
    davis_train = davis.build(image_set, args)
    return _concat([davis_train] * DAVIS_REPEATS_IN_YTVOS_JOINT + [ytvos.build(image_set, args)])


def _concat(parts) -> ConcatDataset:
    dataset = ConcatDataset(parts)
    logger.info("concatenated %s: %d samples", [len(p) for p in parts], len(dataset))
    return dataset
