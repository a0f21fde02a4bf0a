"""COCO RLE masks: the one place the project encodes, checks and decodes them (with pycocotools).

pycocotools decodes a compressed ``counts`` string whose runs do not cover the H x W pixels without a
word, into uninitialised memory: a truncated string gives a garbage mask that changes from run to run.
So every RLE is checked before it is decoded: the string is parsed as pycocotools' ``rleFrString`` reads
it (5 bits per character from ``'0'``, a continuation bit, a sign bit, runs after the second stored as
differences to the run two before) and its runs must be non-negative and sum to H x W. Uncompressed
RLEs (``counts`` a list of ints) get the same check.

Decoding also silences pycocotools' numpy-2 ``copy=False`` DeprecationWarning, which every call of its
``decode`` raises (here, and only here).
"""
import warnings
from typing import Any, Optional, Sequence, Tuple

import numpy as np
from pycocotools import mask as mask_utils

# pycocotools stores runs as 32-bit unsigned ints; a number holds at most 13 characters of 5 bits.
MAX_RUN = 2 ** 32 - 1
MAX_DIGITS = 13


class RLEError(ValueError):
    """A COCO RLE is malformed: bad ``size``, bad ``counts``, or runs that do not cover the mask."""


def run_lengths(counts) -> np.ndarray:
    """The runs (int64 [M]: background, foreground, background, ...) of a compressed COCO counts string.

    Raises ValueError saying what is wrong: a character outside the RLE alphabet, a string that ends inside a
    number (truncated), a negative or oversized run.
    """
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError as error:
            raise ValueError(f"counts has a non-ASCII character at position {error.start}") from None
    digits = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if digits.size == 0:
        return np.zeros(0, dtype=np.int64)
    outside = (digits < 0) | (digits > 63)
    if outside.any():
        position = int(np.argmax(outside))
        raise ValueError(f"counts character {chr(counts[position])!r} at position {position} is not an RLE digit "
                         "('0'..'o')")
    more = (digits & 0x20) != 0
    if more[-1]:
        raise ValueError(f"counts ends inside a number (its {digits.size} characters are truncated)")
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > MAX_DIGITS:
        raise ValueError(f"counts has a number of {int(lengths.max())} characters (at most {MAX_DIGITS} fit a run)")
    shift = 5 * (np.arange(digits.size) - np.repeat(starts, lengths))
    values = np.add.reduceat((digits & 0x1F) << shift, starts)
    negative = (digits[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * lengths[negative])
    # Runs after the second are stored as differences to the run two before.
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])
    runs[2::2] = np.cumsum(values[2::2])
    bad = (runs < 0) | (runs > MAX_RUN)
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(f"run {index} of counts has the impossible length {int(runs[index])}")
    return runs


def rle_problem(rle: Any) -> Optional[str]:
    """What is wrong with a COCO RLE (compressed str/bytes counts, or an uncompressed int list), or None when
    its runs are valid and cover exactly its ``size`` H x W."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        return f"expected a COCO RLE dict with 'size' and 'counts', got {type(rle).__name__}"
    size = rle["size"]
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in size)):
        return f"RLE size must be [height, width] (two non-negative ints), got {size!r}"
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        try:
            runs = run_lengths(counts)
        except ValueError as error:
            return str(error)
    elif isinstance(counts, list) and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                          for v in counts):
        runs = np.asarray(counts, dtype=np.int64)
        if (runs < 0).any():
            return f"uncompressed counts hold a negative run ({int(runs.min())})"
    else:
        return f"RLE counts must be a compressed string or a list of ints, got {type(counts).__name__}"
    total, pixels = int(runs.sum()), int(size[0]) * int(size[1])
    if total != pixels:
        state = "truncated or corrupt" if total < pixels else "corrupt"
        return f"RLE runs cover {total} pixels but its size {size[0]}x{size[1]} has {pixels} ({state} counts)"
    return None


def check_rle(rle: Any, where: str) -> Tuple[int, int]:
    """Check one COCO RLE and return its (H, W); RLEError naming ``where`` (the file, the object and frame) and
    saying what is wrong otherwise."""
    problem = rle_problem(rle)
    if problem is not None:
        raise RLEError(f"{where}: {problem}")
    return int(rle["size"][0]), int(rle["size"][1])


def _pycocotools_decode(rles: list) -> np.ndarray:
    """pycocotools' decode of checked compressed RLEs -> uint8 [H, W, N], without its numpy-2 warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
        return mask_utils.decode(rles)


def decode_rles(rles: Sequence[dict], names: Optional[Sequence[str]] = None) -> np.ndarray:
    """COCO RLE dicts of one size -> bool [N, H, W], each checked first (``check_rle``).

    ``names`` says where each RLE comes from, for the error (default: ``RLE <index>``).
    """
    if not rles:
        raise ValueError("no RLE to decode")
    names = list(names) if names is not None else [f"RLE {index}" for index in range(len(rles))]
    sizes = {check_rle(rle, name) for rle, name in zip(rles, names)}
    if len(sizes) > 1:
        raise RLEError(f"{', '.join(names)}: RLEs of different sizes {sorted(sizes)} cannot be decoded together")
    compressed = [rle if not isinstance(rle["counts"], list) else mask_utils.frPyObjects(rle, *rle["size"])
                  for rle in rles]
    masks = _pycocotools_decode([{"size": list(rle["size"]), "counts": rle["counts"]} for rle in compressed])
    return np.moveaxis(masks, -1, 0).astype(bool)


def encode_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of an [H, W] mask: ``{"size": [H, W], "counts": <str>}`` (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict, where: str) -> np.ndarray:
    """One COCO RLE dict -> bool [H, W], checked first (``check_rle``; the error names ``where``)."""
    return decode_rles([rle], [where])[0]


def segmentation_to_mask(segmentation: Any, height: int, width: int, where: str) -> np.ndarray:
    """A COCO ``segmentation`` (polygons: a list of [x1, y1, x2, y2, ...]; or an RLE dict) -> bool [H, W].

    Polygons are rasterised by pycocotools and OR-ed; an empty polygon list is an empty mask.
    """
    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), dtype=bool)
        try:
            parts = mask_utils.frPyObjects(segmentation, height, width)
        except (TypeError, ValueError, IndexError) as error:
            raise RLEError(f"{where}: polygons cannot be rasterised ({error})") from error
        return _pycocotools_decode(parts).any(axis=2)
    if isinstance(segmentation, dict):
        return decode_rle(segmentation, where)
    raise RLEError(f"{where}: unsupported segmentation of type {type(segmentation).__name__}")
