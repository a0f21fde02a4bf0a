"""A2D-Sentences in its real layout (``DATASETS.md`` §4), with the MTTR-derived files.

Written under ``root``::

    Release/clips320H/<vid>.mp4                     (H.264, yuv420p, even width)
    Release/videoset.csv                            (no header, 9 columns)
    text_annotations/a2d_annotation.txt             (header video_id,instance_id,query)
    text_annotations/a2d_missed_videos.txt
    text_annotations/a2d_annotation_with_instances/<vid>/<NNNNN>.h5   (1-based frame numbers)
    a2d_sentences_single_frame_train_annotations.json
    a2d_sentences_single_frame_test_annotations.json
    a2d_sentences_test_annotations_in_coco_format.json
    synthetic_meta.json

h5 files hold ``instance`` (N,), ``reMask`` (N, W, H) uint8 (``(W, H)`` when N == 1), ``reBBox``
(4, N) and ``id`` (1, N), as MATLAB v7.3 writes them. Instance ids start at 0.

Quirks: a train video id contains ``-``; one text row has instance_id ``1 (copy)``; one query
holds a comma; one video is listed in ``a2d_missed_videos.txt`` (it still has an mp4, h5 files and
sentences, so a loader that forgets the list yields extra samples); single-instance h5 files
(2-D ``reMask``); one multi-instance h5 has a trailing extra mask; the first train video is
annotated on its first and last frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from .common import make_video, pick_num_frames
from .config import Sizes
from .formats import encode_rle, write_csv, write_h5, write_json, write_mp4, write_text_lines
from .language import Describer
from .naming import video_rng, youtube_id
from .sidecar import Sidecar
from .world import Video

NAME = "a2d"
FPS = 24
SUBSET_CODE = {"train": 0, "test": 1}
RECIPES = {
    "train": (("motion_twins", 3, "exit"), ("distinct", 1, None), ("position_twins", 2, None)),
    "test": (("distinct", 2, "exit"), ("motion_twins", 2, None)),
    "missed": (("distinct", 2, None),),
}
ACTOR_OF_SHAPE = {"circle": 3, "square": 5, "triangle": 4, "diamond": 6, "star": 7}  # ball, car, bird, cat, dog
COPY_INSTANCE = "1 (copy)"
COMMA_SUFFIX = ", seen from above"
SECOND_SENTENCE_PROBABILITY = 0.5
VIDEO_DIR = "Release/clips320H"
H5_DIR = "text_annotations/a2d_annotation_with_instances"


def actor_action_code(obj) -> int:
    """A2D actor-action code: tens digit = actor (from the shape), units digit = action (from the motion)."""
    if obj.direction == "still":
        action = 9
    elif obj.direction == "up":
        action = 4
    elif obj.direction == "down":
        action = 5
    else:
        action = 6 if obj.shape == "circle" else 7
    return 10 * ACTOR_OF_SHAPE[obj.shape] + action


def _bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]


def _annotated_frames(rng, video, include_ends: bool) -> list[int]:
    """0-based indices of the 2-3 annotated frames: frames where some instance is visible."""
    visible = [t for t in range(video.num_frames) if video.visible_masks[:, t].any()]
    chosen = set()
    if include_ends:
        chosen |= {t for t in (0, video.num_frames - 1) if t in visible}
    wanted = int(rng.integers(2, 4))
    remaining = [t for t in visible if t not in chosen]
    extra = max(0, wanted - len(chosen))
    chosen |= set(int(t) for t in rng.choice(remaining, size=min(extra, len(remaining)), replace=False))
    return sorted(chosen)


def _h5_payload(video, t: int, trailing_extra_mask: bool) -> tuple[dict, list[int]]:
    """The h5 datasets of frame ``t`` and the instance ids it lists."""
    present = [obj for i, obj in enumerate(video.objects) if video.visible_masks[i, t].any()]
    masks = [video.visible_masks[video.index_of(obj.obj_id), t] for obj in present]
    instances = [obj.obj_id - 1 for obj in present]
    boxes = [_bbox(mask) for mask in masks]
    if trailing_extra_mask:
        extra = np.logical_or.reduce(masks)
        masks.append(extra)
        boxes.append(_bbox(extra))
    re_mask = np.stack([mask.T for mask in masks]).astype(np.uint8)
    re_bbox = np.array(boxes, dtype=np.float64).T
    if len(masks) == 1:
        re_mask = re_mask[0]
    payload = {
        "instance": np.array(instances, dtype=np.float64),
        "reMask": re_mask,
        "reBBox": re_bbox,
        "id": np.array([[actor_action_code(obj) for obj in present]], dtype=np.float64),
    }
    return payload, instances


def _video_id(seed: int, group: str, index: int) -> str:
    video_id = youtube_id(seed, NAME, group, index)
    if group == "train" and index == 0:
        video_id = video_id[:8] + "-" + video_id[9:]
    return video_id


@dataclass
class _WrittenVideo:
    """What one written A2D video contributes to the csv, text and derived files."""

    video_id: str
    split: str
    videoset_row: list
    frames: list  # [(1-based frame, instance ids, h5 payload)]
    sentences: list  # [(instance id, Expression, query)]


def _write_video(root: Path, seed: int, sizes: Sizes, group: str, index: int, size_index: int,
                 add_extra_mask: bool) -> tuple[_WrittenVideo, Video]:
    """Write one mp4 and its h5 files; ``add_extra_mask`` puts a trailing mask in the first multi-instance h5."""
    rng = video_rng(seed, NAME, group, index)
    recipe, num_objects, leaving = RECIPES[group][index % len(RECIPES[group])]
    num_frames = pick_num_frames(rng, sizes.min_frames, sizes.max_frames)
    video_id = _video_id(seed, group, index)
    video = make_video(video_id, rng, sizes.frame_size(size_index), num_frames, recipe, num_objects, leaving=leaving)
    write_mp4(root / VIDEO_DIR / f"{video_id}.mp4", video.frames, FPS)
    split = "train" if group == "missed" else group
    frames = []
    for t in _annotated_frames(rng, video, include_ends=(group == "train" and index == 0)):
        trailing = add_extra_mask and int(video.visible_masks[:, t].any(axis=(1, 2)).sum()) > 1
        add_extra_mask &= not trailing
        payload, instances = _h5_payload(video, t, trailing)
        write_h5(root / H5_DIR / video_id / f"{t + 1:05d}.h5", payload)
        frames.append((t + 1, instances, payload))
    row = [video_id, actor_action_code(video.objects[0]), 0, f"{num_frames / FPS:.2f}", video.height, video.width,
           num_frames, len(frames), SUBSET_CODE[split]]
    describer = Describer(video, rng)
    sentences = []
    for obj in video.objects:
        expression = describer.refer(obj.obj_id)
        if expression is None:
            continue
        chosen = [expression]
        if group != "test" and rng.random() < SECOND_SENTENCE_PROBABILITY:
            chosen.append(describer.refer(obj.obj_id, detailed=True, mention_motion=True))
        sentences += [(obj.obj_id - 1, sentence, sentence.text) for sentence in chosen]
    return _WrittenVideo(video_id, split, row, frames, sentences), video


def write(root: Path, seed: int, sizes: Sizes) -> Path:
    """Write the A2D-Sentences tree under ``root`` and return ``root``."""
    root = Path(root)
    sidecar = Sidecar(NAME, seed, sizes.as_dict())
    groups = [("train", sizes.videos["train"]), ("test", sizes.videos["test"]), ("missed", 1)]
    videoset_rows, text_rows, missed, annotations = [], [], [], {}
    size_index = 0
    for group, count in groups:
        for index in range(count):
            first_train = group == "train" and index == 0
            written, video = _write_video(root, seed, sizes, group, index, size_index, add_extra_mask=first_train)
            size_index += 1
            if group == "missed":
                missed.append(written.video_id)
            videoset_rows.append(written.videoset_row)
            annotations[written.video_id] = written.frames
            sidecar.add_video(group, written.video_id, video, annotated_frames=[f for f, _, _ in written.frames])
            for number, (instance, sentence, query) in enumerate(written.sentences):
                if first_train and number == 0:
                    query += COMMA_SUFFIX
                sidecar.add_expression(written.split, written.video_id, str(len(text_rows)), sentence, [instance],
                                       text=query)
                text_rows.append([written.video_id, str(instance), query])
            if first_train:
                copied = next(row for row in text_rows if row[0] == written.video_id and row[1] == "1")
                text_rows.append([written.video_id, COPY_INSTANCE, copied[2]])

    write_csv(root / "Release" / "videoset.csv", videoset_rows)
    write_csv(root / "text_annotations" / "a2d_annotation.txt", text_rows, header=("video_id", "instance_id", "query"))
    write_text_lines(root / "text_annotations" / "a2d_missed_videos.txt", missed)

    subset_of = {row[0]: row[8] for row in videoset_rows}
    for split, code in SUBSET_CODE.items():
        samples = []
        for video_id, instance, query in text_rows:
            if instance == COPY_INSTANCE or video_id in missed or subset_of[video_id] != code:
                continue
            for frame, instances, _ in annotations[video_id]:
                if int(instance) in instances:
                    samples.append([query.lower(), video_id, frame, int(instance)])
        write_json(root / f"a2d_sentences_single_frame_{split}_annotations.json", samples)
    write_json(root / "a2d_sentences_test_annotations_in_coco_format.json",
               _coco_ground_truth(text_rows, annotations, subset_of, missed))
    sidecar.write(root)
    return root


def _coco_ground_truth(text_rows, annotations, subset_of, missed) -> dict:
    """The test-split COCO ground truth MTTR builds: one image per (video, frame, instance)."""
    images, annos = [], []
    for video_id, instance, _query in text_rows:
        if instance == COPY_INSTANCE or video_id in missed or subset_of[video_id] != SUBSET_CODE["test"]:
            continue
        for frame, instances, payload in annotations[video_id]:
            if int(instance) not in instances:
                continue
            position = instances.index(int(instance))
            re_mask = payload["reMask"]
            mask = (re_mask[position] if re_mask.ndim == 3 else re_mask).T
            rle = encode_rle(mask)
            x1, y1, x2, y2 = payload["reBBox"][:, position]
            image_id = f"v_{video_id}_f_{frame}_i_{instance}"
            images.append({"id": image_id, "height": int(mask.shape[0]), "width": int(mask.shape[1])})
            annos.append({"id": len(annos) + 1, "image_id": image_id, "category_id": 1, "segmentation": rle,
                          "area": float(mask_utils.area(dict(rle, counts=rle["counts"].encode("ascii")))),
                          "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "iscrowd": 0})
    return {"categories": [{"id": 1, "name": "dummy_class"}], "images": images, "annotations": annos}
