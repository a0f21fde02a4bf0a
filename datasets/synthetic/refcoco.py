"""RefCOCO, RefCOCO+ and RefCOCOg: raw files and the converted per-split files (``DATASETS.md`` §6).

Written under ``root`` (the ``--coco_path`` folder)::

    train2014/COCO_train2014_<12-digit id>.jpg
    refcoco/instances.json, refcoco/refs(unc).p, refcoco/refs(google).p
    refcoco+/instances.json, refcoco+/refs(unc).p
    refcocog/instances.json, refcocog/refs(umd).p, refcocog/refs(google).p
    refcoco/instances_refcoco_{train,val,testA,testB}.json
    refcoco+/instances_refcoco+_{train,val,testA,testB}.json
    refcocog/instances_refcocog_{train,val,test}.json
    synthetic_meta.json

Each image holds 2-4 still shapes with polygon annotations; images alternate between two sizes.
The converted files hold one "image" per sentence (ids are 1-based counters) with exactly one
annotation each, as ``convert_refexp_to_coco.py`` writes them. RefCOCO sentences use left/right
where needed, RefCOCO+ sentences never use location words (objects that need them are not
referred to), RefCOCOg sentences are longer. Ref ``file_name`` values carry the ``_<ann id>``
suffix of the real pickles.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from .common import make_video
from .config import Sizes
from .formats import write_jpeg, write_json, write_pickle
from .language import Describer
from .naming import video_rng
from .sidecar import Sidecar
from .world import shape_outline

NAME = "refcoco"
SPLIT_CYCLE = ("train", "val", "testA", "testB", "train", "train")
SPLITS = {
    "refcoco": ("unc", ("train", "val", "testA", "testB")),
    "refcoco+": ("unc", ("train", "val", "testA", "testB")),
    "refcocog": ("umd", ("train", "val", "test")),
}
EXTRA_REF_FILES = {"refcoco": "google", "refcocog": "google"}
STYLE = {"refcoco": "refcoco", "refcoco+": "refcoco", "refcocog": "refcocog"}
SCENE_CYCLE = (("position_twins", 3), ("distinct", 2), ("position_twins", 2), ("distinct", 3))
COCO_CATEGORY = {  # shape -> (COCO id, name, supercategory)
    "circle": (37, "sports ball", "sports"),
    "square": (84, "book", "indoor"),
    "triangle": (38, "kite", "sports"),
    "diamond": (32, "tie", "accessory"),
    "star": (28, "umbrella", "accessory"),
}
MAX_SENTENCES = {"refcoco": 3, "refcoco+": 3, "refcocog": 2}


def _split_for(dataset: str, split_by: str, image_index: int) -> str:
    split = SPLIT_CYCLE[image_index % len(SPLIT_CYCLE)]
    if split_by == "umd":
        return "test" if split.startswith("test") else split
    if split_by == "google":
        return "train" if split == "train" else "val"
    return split


def _polygon(obj) -> list[float]:
    outline = shape_outline(obj.shape, obj.start[0] + 0.5, obj.start[1] + 0.5, obj.radius)
    return [round(float(v), 2) for v in outline.reshape(-1)]


def _image_scene(seed: int, index: int, sizes: Sizes):
    """(image record, annotations, Video, rng) of one synthetic COCO image."""
    rng = video_rng(seed, NAME, "images", index)
    recipe, count = SCENE_CYCLE[index % len(SCENE_CYCLE)]
    video = make_video(f"image{index}", rng, sizes.frame_size(index), 1, recipe, count, static=True,
                       separation="x" if recipe == "position_twins" and index % 4 == 0 else None)
    return video, rng


def _sentence(text: str, sent_id: int) -> dict:
    tokens = text.split()
    return {"tokens": tokens, "raw": text[:1].upper() + text[1:], "sent": " ".join(tokens), "sent_id": sent_id}


def write(root: Path, seed: int, sizes: Sizes) -> Path:
    """Write the RefCOCO family under ``root`` (the COCO folder) and return ``root``."""
    root = Path(root)
    sidecar = Sidecar(NAME, seed, sizes.as_dict())
    id_rng = video_rng(seed, NAME, "ids", 0)
    count = sizes.videos["images"]
    image_ids = [int(i) for i in id_rng.choice(np.arange(100000, 600000), size=count, replace=False)]
    images, annotations, scenes = [], [], []
    next_ann_id = 1000000 + int(id_rng.integers(100000))
    for index in range(count):
        video, rng = _image_scene(seed, index, sizes)
        image_id = image_ids[index]
        file_name = f"COCO_train2014_{image_id:012d}.jpg"
        canvas = video.frames[0].copy()
        ann_ids = {}
        for obj in video.objects:
            polygon = _polygon(obj)
            rle = mask_utils.merge(mask_utils.frPyObjects([polygon], video.height, video.width))
            x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
            ann_ids[obj.obj_id] = next_ann_id
            annotations.append({"segmentation": [polygon], "area": float(mask_utils.area(rle)), "iscrowd": 0,
                                "image_id": image_id, "bbox": [x, y, w, h],
                                "category_id": COCO_CATEGORY[obj.shape][0], "id": next_ann_id})
            next_ann_id += int(rng.integers(1, 50))
        write_jpeg(root / "train2014" / file_name, canvas)
        images.append({"license": 1, "file_name": file_name, "coco_url": "", "height": video.height,
                       "width": video.width, "date_captured": "2013-11-14 00:00:00", "flickr_url": "",
                       "id": image_id})
        sidecar.add_video("train2014", file_name, video, image_id=image_id,
                          ann_ids={str(k): v for k, v in ann_ids.items()})
        scenes.append((video, rng, image_id, file_name, ann_ids))

    used_shapes = sorted({obj.shape for video, *_ in scenes for obj in video.objects})
    instances = {
        "info": {"description": "synthetic shapes in the COCO layout", "version": "1.0", "year": 2014},
        "licenses": [{"id": 1, "name": "synthetic", "url": ""}],
        "images": images,
        "annotations": annotations,
        "categories": [{"supercategory": COCO_CATEGORY[s][2], "name": COCO_CATEGORY[s][1], "id": COCO_CATEGORY[s][0]}
                       for s in used_shapes],
    }
    annotation_by_id = {a["id"]: a for a in annotations}
    image_by_id = {i["id"]: i for i in images}
    for dataset, (split_by, splits) in SPLITS.items():
        refs = _refs(dataset, scenes)
        folder = root / dataset
        write_json(folder / "instances.json", instances)
        for split_name in (split_by,) + ((EXTRA_REF_FILES[dataset],) if dataset in EXTRA_REF_FILES else ()):
            write_pickle(folder / f"refs({split_name}).p", _public(refs, dataset, split_name))
        for split in splits:
            converted = {"info": instances["info"], "licenses": instances["licenses"], "images": [],
                         "annotations": [], "categories": instances["categories"]}
            for ref in refs:
                if _split_for(dataset, split_by, ref["_index"]) != split:
                    continue
                image = image_by_id[ref["image_id"]]
                annotation = annotation_by_id[ref["ann_id"]]
                for sentence, expression in zip(ref["sentences"], ref["_expressions"]):
                    counter = len(converted["images"]) + 1
                    converted["images"].append({"file_name": image["file_name"], "height": image["height"],
                                                "width": image["width"], "original_id": image["id"], "id": counter,
                                                "caption": sentence["sent"], "dataset_name": dataset})
                    converted["annotations"].append({
                        "segmentation": annotation["segmentation"], "area": annotation["area"],
                        "iscrowd": annotation["iscrowd"], "bbox": annotation["bbox"], "image_id": counter,
                        "category_id": annotation["category_id"], "id": counter, "original_id": annotation["id"]})
                    sidecar.add_expression(f"{dataset}/{split}", str(counter), str(sentence["sent_id"]), expression,
                                           [annotation["id"]], text=sentence["sent"])
            write_json(folder / f"instances_{dataset}_{split}.json", converted)
    sidecar.write(root)
    return root


def _refs(dataset: str, scenes) -> list[dict]:
    """Refs of one dataset; keys starting with ``_`` are bookkeeping, dropped before pickling."""
    refs = []
    sent_id = 0
    for index, (video, rng, image_id, file_name, ann_ids) in enumerate(scenes):
        describer = Describer(video, rng, frames=[0], style=STYLE[dataset])
        for obj in video.objects:
            first = describer.refer(obj.obj_id)
            if first is None or (dataset == "refcoco+" and first.kind == "position"):
                continue
            count = int(rng.integers(1, MAX_SENTENCES[dataset] + 1))
            expressions = [first] + [describer.refer(obj.obj_id, detailed=bool(k % 2)) for k in range(1, count)]
            sentences = []
            for expression in expressions:
                sentences.append(_sentence(expression.text, sent_id))
                sent_id += 1
            refs.append({
                "ref_id": len(refs), "ann_id": ann_ids[obj.obj_id], "image_id": image_id,
                "category_id": COCO_CATEGORY[obj.shape][0],
                "file_name": f"{file_name[:-len('.jpg')]}_{ann_ids[obj.obj_id]}.jpg",
                "sent_ids": [s["sent_id"] for s in sentences], "sentences": sentences,
                "_index": index, "_expressions": expressions,
            })
    return refs


def _public(refs: list[dict], dataset: str, split_by: str) -> list[dict]:
    """The refs as the pickles hold them, with the ``split`` of the given split scheme."""
    public = []
    for ref in refs:
        entry = {k: v for k, v in ref.items() if not k.startswith("_")}
        entry["split"] = _split_for(dataset, split_by, ref["_index"])
        public.append(entry)
    return public
