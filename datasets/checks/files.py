"""File-level checks shared by the benchmark checkers.

Each helper reads one file, records a :class:`~datasets.checks.report.Problem` naming that file
when something is wrong, and returns what it read (or None), so a checker can go on and collect
every problem instead of stopping at the first.
"""
from __future__ import annotations

import csv
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
from PIL import Image, ImageFile

from rvos.util.rle import decode_rle, rle_problem
from rvos.util.safe_pickle import load_plain_pickle

from .report import Report

COCO_LISTS = ("images", "annotations", "categories")
IMAGE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}


def parallel(items: Iterable[Any], work: Callable[[Any], None], workers: int) -> None:
    """Run ``work`` on every item, on ``workers`` threads (1 = in order, in this thread)."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        for item in items:
            work(item)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(work, items):
            pass


def require_file(report: Report, path: Path, what: str = "file") -> bool:
    if Path(path).is_file():
        return True
    report.add(path, f"missing {what}")
    return False


def require_dir(report: Report, path: Path, what: str = "folder") -> bool:
    if Path(path).is_dir():
        return True
    report.add(path, f"missing {what}")
    return False


def load_json(report: Report, path: Path, what: str = "JSON file") -> Optional[Any]:
    """Parsed JSON, or None after recording why it could not be read."""
    if not require_file(report, path, what):
        return None
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return json.load(handle)
    except (ValueError, UnicodeDecodeError) as error:
        report.add(path, f"not valid JSON: {error}")
    except OSError as error:
        report.add(path, f"cannot read: {error}")
    return None


def load_pickle(report: Report, path: Path) -> Optional[Any]:
    """The plain data of a pickle (``util.safe_pickle``: nothing in it is run), or None after recording why not."""
    if not require_file(report, path, "pickle file"):
        return None
    try:
        return load_plain_pickle(path)
    except Exception as error:  # a corrupt pickle can raise almost anything; the message names the file
        report.add(path, f"cannot unpickle: {str(error).removeprefix(f'{path}: ')}")
        return None


def read_text(report: Report, path: Path, encoding: str) -> Optional[str]:
    if not require_file(report, path, "text file"):
        return None
    try:
        return Path(path).read_bytes().decode(encoding)
    except UnicodeDecodeError as error:
        report.add(path, f"not valid {encoding} text: {error}")
    except OSError as error:
        report.add(path, f"cannot read: {error}")
    return None


def read_csv_with_header(report: Report, path: Path, header: Sequence[str]) -> list:
    """Rows of a UTF-8 CSV file (quoted fields may hold commas) after checking its header and field counts."""
    text = read_text(report, path, "utf-8")
    if text is None:
        return []
    reader = csv.reader(io.StringIO(text))
    found = next(reader, None)
    if found != list(header):
        report.add(path, f"header must be {','.join(header)}, got {found}")
        return []
    rows = []
    for number, row in enumerate(reader, start=2):
        if len(row) != len(header):
            report.add(path, f"line {number}: {len(row)} fields, expected {len(header)}")
        else:
            rows.append(row)
    return rows


def check_image(report: Report, path: Path, decode: bool = True, mode: Optional[str] = None,
                size: Optional[tuple[int, int]] = None) -> Optional[tuple[int, int]]:
    """(height, width) of an image after checking it exists, decodes fully and matches ``mode``/``size``.

    With ``decode`` False only existence is checked and None is returned.
    """
    path = Path(path)
    if not require_file(report, path, "image"):
        return None
    if not decode:
        return None
    expected_format = IMAGE_FORMATS.get(path.suffix.lower())
    try:
        with Image.open(path) as image:
            image.load()
            found_format, found_mode, (width, height) = image.format, image.mode, image.size
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError... on corrupt files
        report.add(path, f"cannot decode image: {error}")
        return None
    if expected_format and found_format != expected_format:
        report.add(path, f"is a {found_format} file, expected {expected_format}")
    elif found_format == "JPEG" and ImageFile.LOAD_TRUNCATED_IMAGES and not _ends_with_jpeg_marker(path):
        report.add(path, "JPEG lacks its end-of-image marker (truncated file)")
    if mode is not None and found_mode != mode:
        report.add(path, f"image mode is {found_mode}, expected {mode}")
    if size is not None and (height, width) != tuple(size):
        report.add(path, f"size {height}x{width} differs from the frame size {size[0]}x{size[1]}")
    return height, width


def _ends_with_jpeg_marker(path: Path) -> bool:
    """True when the file ends with the JPEG end-of-image marker (trailing zero padding allowed).

    PIL decodes truncated JPEGs without complaint once ``ImageFile.LOAD_TRUNCATED_IMAGES`` has been
    set anywhere in the process; truncation is then checked on the bytes instead.
    """
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - 64))
        tail = handle.read().rstrip(b"\x00")
    return tail.endswith(b"\xff\xd9")


def is_rle(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("size"), list) and "counts" in value


def check_rle(report: Report, path: Path, rle: Any, where: str, size: Optional[tuple[int, int]],
              decode: bool = True) -> None:
    """Check one COCO RLE dict: str counts, ``size`` equal to the frame size, runs covering exactly H x W
    (``util.rle``: a truncated counts string is caught), and decodable."""
    if not is_rle(rle):
        report.add(path, f"{where}: expected null or a COCO RLE dict with 'size' and 'counts'")
        return
    if not isinstance(rle["counts"], str):
        report.add(path, f"{where}: RLE counts must be a compressed str (got {type(rle['counts']).__name__})")
        return
    if size is not None and tuple(rle["size"]) != tuple(size):
        report.add(path, f"{where}: RLE size {rle['size']} differs from the frame size {list(size)}")
    problem = rle_problem(rle)
    if problem is not None:
        report.add(path, f"{where}: {problem}")
    elif decode:
        try:
            decode_rle(rle, where)
        except Exception as error:  # pycocotools raises ValueError, TypeError, ...
            report.add(path, f"{where}: RLE does not decode: {error}")


def read_h5(report: Report, path: Path, keys: Iterable[str]) -> Optional[dict]:
    """The named datasets of an HDF5 file as numpy arrays, or None."""
    import h5py

    if not require_file(report, path, "h5 file"):
        return None
    try:
        with h5py.File(path, "r") as handle:
            missing = [key for key in keys if key not in handle]
            if missing:
                report.add(path, f"h5 file lacks datasets {missing}")
                return None
            return {key: np.array(handle[key]) for key in keys}
    except Exception as error:
        report.add(path, f"cannot read h5 file: {error}")
        return None


def load_mat_variable(report: Report, path: Path, key: str) -> Optional[np.ndarray]:
    import scipy.io

    if not require_file(report, path, ".mat file"):
        return None
    try:
        content = scipy.io.loadmat(path)
    except Exception as error:
        report.add(path, f"cannot load .mat file: {error}")
        return None
    if key not in content:
        report.add(path, f".mat file has no variable {key!r}")
        return None
    return np.asarray(content[key])


def probe_video(report: Report, path: Path, decode: bool = True) -> Optional[tuple[int, tuple[int, int]]]:
    """(decoded frame count, (height, width)) of a video file read with PyAV, or None."""
    import av

    if not require_file(report, path, "video"):
        return None
    if not decode:
        return None
    try:
        count, size = 0, None
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                count += 1
                size = (frame.height, frame.width)
    except Exception as error:
        report.add(path, f"cannot decode video: {error}")
        return None
    if count == 0:
        report.add(path, "video has no decodable frames")
        return None
    return count, size


def is_coco_dict(data: Any) -> bool:
    """True for a dict with ``images``, ``annotations`` and ``categories`` lists."""
    return isinstance(data, dict) and all(isinstance(data.get(key), list) for key in COCO_LISTS)


def check_coco_ground_truth(report: Report, path: Path, with_bbox: bool) -> None:
    """A COCO ground-truth file of RLE masks (A2D / JHMDB evaluation): unique image ids, known images, valid RLEs."""
    gt = load_json(report, path)
    if gt is None:
        return
    if not is_coco_dict(gt):
        report.add(path, "expected a COCO dict with 'images', 'annotations' and 'categories' lists")
        return
    sizes = {}
    for image in gt["images"]:
        if image.get("id") in sizes:
            report.add(path, f"image id {image.get('id')} appears twice")
        sizes[image.get("id")] = (image.get("height"), image.get("width"))
    for annotation in gt["annotations"]:
        image_id = annotation.get("image_id")
        if image_id not in sizes:
            report.add(path, f"annotation {annotation.get('id')} refers to unknown image {image_id}")
            continue
        check_rle(report, path, annotation.get("segmentation"), f"annotation {annotation.get('id')}", sizes[image_id])
        if with_bbox and not (isinstance(annotation.get("bbox"), list) and len(annotation["bbox"]) == 4):
            report.add(path, f"annotation {annotation.get('id')}: needs a 4-number 'bbox'")
