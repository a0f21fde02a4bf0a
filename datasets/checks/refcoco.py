"""RefCOCO / RefCOCO+ / RefCOCOg checks (``DATASETS.md`` §6): converted split files, images, raw files."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from rvos.datasets.sentences import is_sentence

from .files import check_image, is_coco_dict, load_json, load_pickle, parallel
from .report import Report

SPLITS = {
    "refcoco": ("train", "val", "testA", "testB"),
    "refcoco+": ("train", "val", "testA", "testB"),
    "refcocog": ("train", "val", "test"),
}
RAW_REF_FILES = {"refcoco": ("refs(unc).p",), "refcoco+": ("refs(unc).p",), "refcocog": ("refs(umd).p",)}
IMAGE_KEYS = ("file_name", "height", "width", "id", "original_id", "caption")
ANNOTATION_KEYS = ("segmentation", "area", "iscrowd", "bbox", "image_id", "category_id", "id")
REF_KEYS = ("ref_id", "ann_id", "image_id", "category_id", "split", "sent_ids", "sentences")
IMAGE_FOLDER = "train2014"


def _check_polygons(report: Report, path: Path, segmentation, where: str) -> None:
    if isinstance(segmentation, dict):
        return
    if not isinstance(segmentation, list) or not segmentation:
        report.add(path, f"{where}: 'segmentation' must be a list of polygons or an RLE dict")
        return
    for polygon in segmentation:
        if not (isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0):
            report.add(path, f"{where}: each polygon needs an even number (>= 6) of coordinates")
            return


def _check_split_file(report: Report, path: Path, split: str, images_seen: dict) -> None:
    data = load_json(report, path)
    if data is None:
        return
    if not is_coco_dict(data):
        report.add(path, "expected a COCO dict with 'images', 'annotations' and 'categories' lists")
        return
    categories = {c.get("id") for c in data["categories"] if isinstance(c, dict)}
    images = {}
    for image in data["images"]:
        missing = [k for k in IMAGE_KEYS if not isinstance(image, dict) or k not in image]
        if missing:
            report.add(path, f"image entry {image.get('id') if isinstance(image, dict) else image!r} lacks {missing}")
            continue
        if not is_sentence(image["caption"]):
            report.add(path, f"image entry {image['id']}: empty 'caption' {image['caption']!r}")
        images[image["id"]] = image
        images_seen.setdefault(image["file_name"], (image["height"], image["width"]))
    per_image = {}
    for annotation in data["annotations"]:
        missing = [k for k in ANNOTATION_KEYS if not isinstance(annotation, dict) or k not in annotation]
        if missing:
            report.add(path, f"annotation lacks {missing}")
            continue
        where = f"annotation {annotation['id']}"
        image = images.get(annotation["image_id"])
        if image is None:
            report.add(path, f"{where} refers to unknown image {annotation['image_id']}")
            continue
        per_image[annotation["image_id"]] = per_image.get(annotation["image_id"], 0) + 1
        if annotation["category_id"] not in categories:
            report.add(path, f"{where}: category {annotation['category_id']} is not in 'categories'")
        _check_polygons(report, path, annotation["segmentation"], where)
        x, y, w, h = (annotation["bbox"] + [0, 0, 0, 0])[:4]
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > image["width"] + 1 or y + h > image["height"] + 1:
            report.add(path, f"{where}: bbox {annotation['bbox']} lies outside the "
                             f"{image['width']}x{image['height']} image")
    for image_id in images:
        if per_image.get(image_id, 0) != 1:
            report.add(path, f"image {image_id} has {per_image.get(image_id, 0)} annotations, expected exactly 1")
    report.count(split, "sentences (images)", len(images))
    report.count(split, "distinct COCO images", len({i["original_id"] for i in images.values()}))


def check_family(name: str, root: Path, splits: Sequence[str], report: Report, decode: bool = True,
                 workers: int = 1) -> None:
    """Check one of refcoco / refcoco+ / refcocog under the COCO folder ``root``."""
    root = Path(root)
    folder = root / name
    images_seen: dict = {}
    for split in splits:
        _check_split_file(report, folder / f"instances_{name}_{split}.json", split, images_seen)
    parallel(sorted(images_seen.items()), lambda item: check_image(
        report, root / IMAGE_FOLDER / item[0], decode=decode, size=item[1]), workers)
    if (folder / "instances.json").exists():
        load_json(report, folder / "instances.json")
    for file_name in RAW_REF_FILES[name]:
        path = folder / file_name
        if not path.exists():
            continue
        refs = load_pickle(report, path)
        if refs is None:
            continue
        if not isinstance(refs, list):
            report.add(path, "expected a list of refs")
            continue
        for ref in refs:
            missing = [k for k in REF_KEYS if not isinstance(ref, dict) or k not in ref]
            if missing:
                report.add(path, f"ref {ref.get('ref_id') if isinstance(ref, dict) else '?'} lacks {missing}")
                break
