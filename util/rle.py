"""COCO RLE encoding and decoding with pycocotools (decoding without its numpy-2 ``copy=False`` DeprecationWarning
on every call)."""
import warnings
from typing import Sequence

import numpy as np
from pycocotools import mask as mask_utils


def decode_rles(rles: Sequence[dict]) -> np.ndarray:
    """COCO RLE dicts (``size`` [H, W], ``counts`` str or bytes) of one size -> bool [N, H, W]."""
    if not rles:
        raise ValueError("no RLE to decode")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
        masks = mask_utils.decode(list(rles))
    return np.moveaxis(masks, -1, 0).astype(bool)


def encode_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of an [H, W] mask: ``{"size": [H, W], "counts": <str>}`` (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}
