"""JHMDB-Sentences in its real layout (``DATASETS.md`` §5), with the MTTR-derived files.

Written under ``root`` (the folder the real data calls ``jhmdb_sentences``)::

    Rename_Images/<action>/<vid>/00001.png ...          (RGB PNG, 1-based)
    puppet_mask/<action>/<vid>/puppet_mask.mat          (part_mask uint8 (H, W, T))
    jhmdb_annotation.txt                                (header video_id,query)
    jhmdb_sentences_samples_metadata.json               (3 frames per video)
    jhmdb_sentences_gt_annotations_in_coco_format.json
    synthetic_meta.json

The referred shape (the "puppet") is the nearest shape of its video and stays in the frame; the
other shape is a distractor without a mask. Paths in the metadata start with
``./jhmdb_sentences/``, as in the real file. Quirk: the first video's ``.mat`` has two frames
fewer than its PNGs.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from .common import pick_num_frames
from .config import Sizes
from .formats import encode_rle, write_csv, write_json, write_mat, write_rgb_png
from .language import Describer
from .naming import video_rng
from .scenes import SceneBuilder
from .sidecar import Sidecar
from .world import Video

NAME = "jhmdb"
ACTIONS = ("walk", "run")
METADATA_PREFIX = "./jhmdb_sentences"
SAMPLES_PER_VIDEO = 3
SHORT_MAT_FRAMES = 2
TARGET_ID = 1


def _scene(rng, size, num_frames: int) -> list:
    """A target shape (id 1, drawn in front) and one distractor, both staying in the frame."""
    objects = SceneBuilder(rng, size[0], size[1], num_frames).build("distinct", 2)
    nearest = max(obj.depth for obj in objects) + 1
    return [dataclasses.replace(obj, depth=nearest) if obj.obj_id == TARGET_ID else obj for obj in objects]


def write(root: Path, seed: int, sizes: Sizes) -> Path:
    """Write the JHMDB-Sentences tree under ``root`` and return ``root``."""
    root = Path(root)
    sidecar = Sidecar(NAME, seed, sizes.as_dict())
    rows, samples, images, annotations = [], [], [], []
    for index in range(sizes.videos["test"]):
        rng = video_rng(seed, NAME, "test", index)
        action = ACTIONS[index % len(ACTIONS)]
        num_frames = pick_num_frames(rng, sizes.min_frames, sizes.max_frames)
        size = sizes.frame_size(index)
        objects = _scene(rng, size, num_frames)
        target = next(obj for obj in objects if obj.obj_id == TARGET_ID)
        video_id = f"synthetic_{target.colour}_{target.shape}_{action}_f_nm_np1_fr_med_{index}"
        video = Video(video_id, size[0], size[1], num_frames, objects, render_seed=int(rng.integers(2 ** 63)))

        for t in range(num_frames):
            write_rgb_png(root / "Rename_Images" / action / video_id / f"{t + 1:05d}.png", video.frames[t])
        mask_frames = num_frames - SHORT_MAT_FRAMES if index == 0 else num_frames
        part_mask = video.visible_masks[video.index_of(TARGET_ID), :mask_frames].transpose(1, 2, 0).astype(np.uint8)
        write_mat(root / "puppet_mask" / action / video_id / "puppet_mask.mat", {"part_mask": part_mask})

        expression = Describer(video, rng).refer(TARGET_ID, detailed=True, mention_motion=True)
        rows.append([video_id, expression.text])
        sidecar.add_video("test", video_id, video, mask_frames=mask_frames, action=action)
        sidecar.add_expression("test", video_id, "0", expression, [TARGET_ID])

        total = min(num_frames, mask_frames)
        chosen = sorted(int(i) + 1 for i in rng.choice(total, size=min(SAMPLES_PER_VIDEO, total), replace=False))
        for frame in chosen:
            samples.append([video_id, f"{METADATA_PREFIX}/Rename_Images/{action}/{video_id}/{frame:05d}.png",
                            f"{METADATA_PREFIX}/puppet_mask/{action}/{video_id}/puppet_mask.mat", total,
                            expression.text])
            mask = part_mask[:, :, frame - 1]
            rle = encode_rle(mask)
            image_id = f"v_{video_id}_f_{frame}"
            images.append({"id": image_id, "height": int(mask.shape[0]), "width": int(mask.shape[1])})
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                "segmentation": rle, "iscrowd": 0,
                                "area": float(mask_utils.area(dict(rle, counts=rle["counts"].encode("ascii"))))})
    write_csv(root / "jhmdb_annotation.txt", rows, header=("video_id", "query"))
    write_json(root / "jhmdb_sentences_samples_metadata.json", samples)
    write_json(root / "jhmdb_sentences_gt_annotations_in_coco_format.json",
               {"categories": [{"id": 1, "name": "dummy_class"}], "images": images, "annotations": annotations})
    sidecar.write(root)
    return root
