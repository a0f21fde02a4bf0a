"""The synthetic generator writes each benchmark's real layout with real, decodable files."""
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image
from pycocotools import mask as mask_utils

from rvos.datasets.synthetic import HELD_OUT_DIR, SIDECAR_NAME, make_dataset
from rvos.datasets.categories import DAVIS_CATEGORIES, YTVOS_CATEGORIES
from rvos.datasets.synthetic.world import COLOURS
from rvos.util.safe_pickle import load_plain_pickle
from rvos.tools.make_synthetic_data import main as make_synthetic_data
from rvos.util.rle import decode_rle

REPO = Path(__file__).resolve().parents[1]
KINDS = {"appearance", "motion", "position", "multi"}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("synthetic")
    return {name: make_dataset(name, base / name, seed=0) for name in
            ("ytvos", "davis", "mevis", "a2d", "jhmdb", "refcoco", "video")}


def _json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _decode_video(path):
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def _sidecar(root):
    return _json(root / SIDECAR_NAME)


def _davis_colour(index):
    """Colour of a palette index, built independently from the bit-interleaving rule."""
    rgb = [0, 0, 0]
    for bit in range(8):
        for channel in range(3):
            rgb[channel] |= ((index >> (3 * bit + channel)) & 1) << (7 - bit)
    return tuple(rgb)


def _assert_colour_inside(frame, mask, colour, tolerance=45):
    mean = frame[mask.astype(bool)].astype(float).mean(axis=0)
    assert np.abs(mean - np.array(colour)).max() < tolerance, (mean, colour)


# ---------------------------------------------------------------- Ref-YouTube-VOS
def test_ytvos_layout_and_quirks(roots):
    root = roots["ytvos"]
    train = _json(root / "meta_expressions/train/meta_expressions.json")["videos"]
    valid = _json(root / "meta_expressions/valid/meta_expressions.json")["videos"]
    test = _json(root / "meta_expressions/test/meta_expressions.json")["videos"]
    meta = _json(root / "train/meta.json")["videos"]
    assert set(test) <= set(valid)
    assert {p.name for p in (root / "valid/JPEGImages").iterdir()} == set(valid) - set(test)
    assert {p.name for p in (root / "test/JPEGImages").iterdir()} == set(test)
    starts = [entry["frames"][0] for entry in train.values()]
    assert "00005" in starts and "00000" in starts
    for entry in list(train.values()) + list(valid.values()):
        steps = {int(b) - int(a) for a, b in zip(entry["frames"], entry["frames"][1:])}
        assert steps == {5}
    texts = [(vid, e["exp"], e["obj_id"]) for vid, entry in train.items() for e in entry["expressions"].values()]
    assert len(texts) > len(set(texts)), "one expression text should be duplicated"
    assert all(isinstance(e["obj_id"], str) for entry in train.values() for e in entry["expressions"].values())
    assert all(set(e) == {"exp"} for entry in valid.values() for e in entry["expressions"].values())
    sizes, absent = set(), 0
    for vid, entry in train.items():
        for name in entry["frames"]:
            image = Image.open(root / "train/JPEGImages" / vid / f"{name}.jpg")
            assert image.format == "JPEG" and image.mode == "RGB"
            annotation = Image.open(root / "train/Annotations" / vid / f"{name}.png")
            assert annotation.mode == "P" and annotation.size == image.size
            sizes.add(image.size)
        objects = meta[vid]["objects"]
        for obj_id, obj in objects.items():
            absent += len(obj["frames"]) < len(entry["frames"])
        labels = np.array(Image.open(root / "train/Annotations" / vid / f"{entry['frames'][0]}.png"))
        assert set(np.unique(labels)) - {0} <= {int(k) for k in objects}
    assert len(sizes) == 2
    assert absent > 0, "some object should be missing from some frames"


def test_palette_pngs_carry_the_davis_palette(roots):
    png = next((roots["ytvos"] / "train/Annotations").rglob("*.png"))
    palette = Image.open(png).getpalette()
    for index in (0, 1, 2, 3, 4, 10, 255):
        assert tuple(palette[3 * index:3 * index + 3]) == _davis_colour(index)
    assert _davis_colour(1) == (128, 0, 0) and _davis_colour(2) == (0, 128, 0) and _davis_colour(4) == (0, 0, 128)


def test_ytvos_palette_masks_sit_on_the_shapes(roots):
    root = roots["ytvos"]
    sidecar = _sidecar(root)
    for vid, info in sidecar["videos"]["train"].items():
        name = info["frames"][0]
        frame = np.array(Image.open(root / "train/JPEGImages" / vid / f"{name}.jpg"))
        labels = np.array(Image.open(root / "train/Annotations" / vid / f"{name}.png"))
        for obj_id, obj in info["objects"].items():
            if (labels == int(obj_id)).sum() > 30:
                _assert_colour_inside(frame, labels == int(obj_id), COLOURS[obj["colour"]])


def test_ytvos_held_out_ground_truth(roots):
    root = roots["ytvos"]
    for split in ("valid", "test"):
        gt_meta = _json(root / HELD_OUT_DIR / split / "meta_expressions.json")["videos"]
        assert gt_meta
        for vid, entry in gt_meta.items():
            for exp_id in entry["expressions"]:
                folder = root / HELD_OUT_DIR / split / "Annotations" / vid / exp_id
                assert sorted(p.stem for p in folder.glob("*.png")) == entry["frames"]
                masks = [np.array(Image.open(p)) for p in sorted(folder.glob("*.png"))]
                assert Image.open(next(folder.glob("*.png"))).mode == "L"
                assert set(np.unique(np.stack(masks))) <= {0, 255} and np.stack(masks).any()


def test_sidecar_records_every_expression_with_its_kind(roots):
    root = roots["ytvos"]
    sidecar = _sidecar(root)
    assert sidecar["dataset"] == "ytvos" and sidecar["held_out_ground_truth"] == {
        "valid": f"{HELD_OUT_DIR}/valid", "test": f"{HELD_OUT_DIR}/test"}
    records = {(r["split"], r["video"], r["exp_id"]): r for r in sidecar["expressions"]}
    train = _json(root / "meta_expressions/train/meta_expressions.json")["videos"]
    for vid, entry in train.items():
        for exp_id, expression in entry["expressions"].items():
            record = records[("train", vid, exp_id)]
            assert record["exp"] == expression["exp"] and record["objects"] == [int(expression["obj_id"])]
    assert {r["kind"] for r in sidecar["expressions"]} == {"appearance", "motion", "position"}
    assert all(r["needs_motion"] == (r["kind"] == "motion") or r["kind"] == "position" for r in sidecar["expressions"])


# ---------------------------------------------------------------- Ref-DAVIS17
def _convert_davis_text(root, sequences):
    """Meta expressions rebuilt from the text files by the converter's rules (DATASETS.md §2.2)."""
    fixes = {"clasic-car": "classic-car", "dog-scale": "dogs-scale", "motor-bike": "motorbike"}
    files = [("Davis17_annot1.txt", "utf-8"), ("Davis17_annot1_full_video.txt", "utf-8"),
             ("Davis17_annot2.txt", "latin-1"), ("Davis17_annot2_full_video.txt", "latin-1")]
    parsed = []
    for name, encoding in files:
        per_video = {}
        with open(root / "davis_text_annotations" / name, encoding=encoding) as handle:
            for line in handle:
                tokens = line.strip().split()
                video = fixes.get(tokens[0], tokens[0])
                per_video.setdefault(video, []).append({"exp": " ".join(tokens[2:])[1:-1], "obj_id": tokens[1]})
        parsed.append({v: sorted(e, key=lambda x: x["obj_id"]) for v, e in per_video.items()})
    result = {}
    for video in sequences:
        expressions = {}
        for group in zip(*(p[video] for p in parsed)):
            for entry in group:
                expressions[str(len(expressions))] = entry
        result[video] = expressions
    return result


def test_davis_converted_layout_matches_the_text_files(roots):
    root = roots["davis"]
    for split, image_set in (("train", "train.txt"), ("valid", "val.txt")):
        sequences = (root / "DAVIS/ImageSets/2017" / image_set).read_text().split()
        meta = _json(root / "meta_expressions" / split / "meta_expressions.json")["videos"]
        assert sorted(meta) == sorted(sequences)
        rebuilt = _convert_davis_text(root, sequences)
        for video in sequences:
            assert meta[video]["expressions"] == rebuilt[video]
            assert meta[video]["frames"] == sorted(p.stem for p in (root / split / "JPEGImages" / video).glob("*.jpg"))
            assert len(meta[video]["expressions"]) % 4 == 0
    assert "blackswan" in (root / "DAVIS/ImageSets/2017/val.txt").read_text().split()


def test_davis_quirks(roots):
    root = roots["davis"]
    annot2 = (root / "davis_text_annotations/Davis17_annot2.txt").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        annot2.decode("utf-8")
    assert any(ord(c) > 127 for c in annot2.decode("latin-1"))
    (root / "davis_text_annotations/Davis17_annot1.txt").read_bytes().decode("utf-8")
    assert b"clasic-car " in (root / "davis_text_annotations/Davis17_annot1.txt").read_bytes()
    semantics = _json(root / "DAVIS/davis_semantics.json")
    assert any(len(ids) >= 10 for ids in semantics.values())
    meta = _json(root / "meta_expressions/valid/meta_expressions.json")["videos"]
    crowded = next(v for v in meta.values() if len(v["expressions"]) >= 40)
    order = [crowded["expressions"][str(4 * k)]["obj_id"] for k in range(len(crowded["expressions"]) // 4)]
    assert order[:3] == ["1", "10", "2"]


def test_davis_trees_hold_the_same_frames(roots):
    root = roots["davis"]
    for split, image_set in (("train", "train.txt"), ("valid", "val.txt")):
        for sequence in (root / "DAVIS/ImageSets/2017" / image_set).read_text().split():
            raw = sorted((root / "DAVIS/JPEGImages/480p" / sequence).glob("*.jpg"))
            assert [p.name for p in raw] == [f"{i:05d}.jpg" for i in range(len(raw))]
            for path in raw:
                assert path.read_bytes() == (root / split / "JPEGImages" / sequence / path.name).read_bytes()
                png = root / "DAVIS/Annotations_unsupervised/480p" / sequence / f"{path.stem}.png"
                assert Image.open(png).mode == "P"
                assert png.read_bytes() == (root / split / "Annotations" / sequence / png.name).read_bytes()


# ---------------------------------------------------------------- MeViS
def test_mevis_mask_dict_decodes_to_the_frames(roots):
    root = roots["mevis"]
    anno_counts, nulls, overlaps = set(), 0, 0
    for split in ("train", "valid_u"):
        meta = _json(root / split / "meta_expressions.json")["videos"]
        masks = _json(root / split / "mask_dict.json")
        for vid, entry in meta.items():
            assert isinstance(entry["vid_id"], int)
            size = Image.open(root / split / "JPEGImages" / vid / f"{entry['frames'][0]}.jpg").size[::-1]
            for expression in entry["expressions"].values():
                anno_counts.add(len(expression["anno_id"]))
                assert len(expression["obj_id"]) == len(expression["anno_id"])
                total = np.zeros((len(entry["frames"]),) + size, dtype=np.int32)
                for anno in expression["anno_id"]:
                    per_frame = masks[str(anno)]
                    assert len(per_frame) == len(entry["frames"])
                    for i, rle in enumerate(per_frame):
                        if rle is None:
                            nulls += 1
                            continue
                        assert isinstance(rle["counts"], str) and rle["size"] == list(size)
                        total[i] += decode_rle(rle, "mask_dict entry")
                overlaps += int(total.max() >= 2)
    assert {1, 2, 3} <= anno_counts
    assert nulls > 0 and overlaps > 0


def test_mevis_valid_has_no_ids_and_held_out_ground_truth(roots):
    root = roots["mevis"]
    valid = _json(root / "valid/meta_expressions.json")["videos"]
    assert all(set(e) == {"exp"} for v in valid.values() for e in v["expressions"].values())
    assert not (root / "valid/mask_dict.json").exists()
    gt_meta = _json(root / HELD_OUT_DIR / "valid/meta_expressions.json")["videos"]
    gt_masks = _json(root / HELD_OUT_DIR / "valid/mask_dict.json")
    assert set(gt_meta) == set(valid)
    for vid, entry in gt_meta.items():
        for exp_id, expression in entry["expressions"].items():
            for i, frame in enumerate(entry["frames"]):
                union = np.zeros(0)
                for anno in expression["anno_id"]:
                    rle = gt_masks[str(anno)][i]
                    if rle is not None:
                        decoded = decode_rle(rle, "mask_dict entry")
                        union = decoded if union.size == 0 else union | decoded
                png = np.array(Image.open(root / HELD_OUT_DIR / "valid/Annotations" / vid / exp_id / f"{frame}.png"))
                assert np.array_equal(png > 0, union if union.size else np.zeros_like(png, dtype=bool))


# ---------------------------------------------------------------- A2D-Sentences
def test_a2d_files(roots):
    root = roots["a2d"]
    with open(root / "Release/videoset.csv", newline="") as handle:
        videoset = {row[0]: row for row in csv.reader(handle)}
    assert all(len(row) == 9 for row in videoset.values())
    with open(root / "text_annotations/a2d_annotation.txt", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert any(row["instance_id"] == "1 (copy)" for row in rows)
    assert any("," in row["query"] for row in rows)
    missed = (root / "text_annotations/a2d_missed_videos.txt").read_text().split()
    assert len(missed) == 1 and missed[0] in videoset
    assert any("-" in video for video in videoset)
    single, trailing, edge_frames = 0, 0, set()
    for video, row in videoset.items():
        frames = _decode_video(root / "Release/clips320H" / f"{video}.mp4")
        assert frames.shape[0] == int(row[6]) and frames.shape[1:3] == (int(row[4]), int(row[5]))
        assert frames.shape[2] % 2 == 0
        for h5 in sorted((root / "text_annotations/a2d_annotation_with_instances" / video).glob("*.h5")):
            assert re.fullmatch(r"\d{5}\.h5", h5.name)
            frame_index = int(h5.stem) - 1
            edge_frames |= {"first"} if frame_index == 0 else {"last"} if frame_index == frames.shape[0] - 1 else set()
            with h5py.File(h5, "r") as handle:
                instances, re_mask, re_bbox = (np.array(handle[k]) for k in ("instance", "reMask", "reBBox"))
                assert instances.ndim == 1 and re_mask.dtype == np.uint8 and re_bbox.shape[0] == 4
                if len(instances) == 1:
                    assert re_mask.ndim == 2
                    single += 1
                    re_mask = re_mask[None]
                trailing += re_mask.shape[0] > len(instances)
                masks = re_mask.transpose(0, 2, 1)
                assert masks.shape[1:] == frames.shape[1:3]
                _assert_colour_inside(frames[frame_index], masks[0], _instance_colour(root, video, int(instances[0])))
    assert single > 0 and trailing == 1 and edge_frames == {"first", "last"}


def _instance_colour(root, video, instance):
    groups = _sidecar(root)["videos"]
    info = next(g[video] for g in groups.values() if video in g)
    return COLOURS[info["objects"][str(instance + 1)]["colour"]]


def test_a2d_derived_files_agree_with_the_h5(roots):
    root = roots["a2d"]
    missed = set((root / "text_annotations/a2d_missed_videos.txt").read_text().split())
    train = _json(root / "a2d_sentences_single_frame_train_annotations.json")
    assert train and all(len(s) == 4 for s in train) and not {s[1] for s in train} & missed
    gt = _json(root / "a2d_sentences_test_annotations_in_coco_format.json")
    ids = [image["id"] for image in gt["images"]]
    assert len(ids) == len(set(ids))
    for annotation in gt["annotations"]:
        video, frame, instance = re.fullmatch(r"v_(.+)_f_(\d+)_i_(\d+)", annotation["image_id"]).groups()
        with h5py.File(root / "text_annotations/a2d_annotation_with_instances" / video / f"{int(frame):05d}.h5") as f:
            instances = list(f["instance"])
            re_mask = np.array(f["reMask"])
        mask = (re_mask[instances.index(int(instance))] if re_mask.ndim == 3 else re_mask).T
        assert np.array_equal(decode_rle(annotation["segmentation"], "annotation"), mask)


# ---------------------------------------------------------------- JHMDB-Sentences
def test_jhmdb_files(roots):
    root = roots["jhmdb"]
    with open(root / "jhmdb_annotation.txt", newline="") as handle:
        rows = list(csv.DictReader(handle))
    short = 0
    for row in rows:
        (folder,) = list((root / "Rename_Images").glob(f"*/{row['video_id']}"))
        pngs = sorted(folder.glob("*.png"))
        assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(1, len(pngs) + 1)]
        assert Image.open(pngs[0]).mode == "RGB"
        mat_path = root / "puppet_mask" / folder.parent.name / folder.name / "puppet_mask.mat"
        part_mask = scipy.io.loadmat(mat_path)["part_mask"]
        assert part_mask.dtype == np.uint8 and part_mask.shape[:2] == np.array(Image.open(pngs[0])).shape[:2]
        short += part_mask.shape[2] == len(pngs) - 2
    assert short == 1
    samples = _json(root / "jhmdb_sentences_samples_metadata.json")
    assert len(samples) == 3 * len(rows)
    gt = {a["image_id"]: a for a in _json(root / "jhmdb_sentences_gt_annotations_in_coco_format.json")["annotations"]}
    for video, frame_path, mask_path, total, _query in samples:
        assert frame_path.startswith("./jhmdb_sentences/") and mask_path.startswith("./jhmdb_sentences/")
        frame_file = root / frame_path[len("./jhmdb_sentences/"):]
        part_mask = scipy.io.loadmat(root / mask_path[len("./jhmdb_sentences/"):])["part_mask"]
        frame = int(frame_file.stem)
        assert frame <= total == min(part_mask.shape[2], len(list(frame_file.parent.glob("*.png"))))
        assert np.array_equal(decode_rle(gt[f"v_{video}_f_{frame}"]["segmentation"], "gt"), part_mask[:, :, frame - 1])


# ---------------------------------------------------------------- RefCOCO family
def test_refcoco_converted_files(roots):
    root = roots["refcoco"]
    location = re.compile(r"\b(left|right|top|bottom)\b")
    colour_of_annotation = {}
    for image in _sidecar(root)["videos"]["train2014"].values():
        for obj_id, ann_id in image["ann_ids"].items():
            colour_of_annotation[ann_id] = COLOURS[image["objects"][obj_id]["colour"]]
    for name, splits in (("refcoco", ("train", "val", "testA", "testB")),
                         ("refcoco+", ("train", "val", "testA", "testB")), ("refcocog", ("train", "val", "test"))):
        captions = []
        for split in splits:
            data = _json(root / name / f"instances_{name}_{split}.json")
            assert data["images"] and [i["id"] for i in data["images"]] == list(range(1, len(data["images"]) + 1))
            assert [a["image_id"] for a in data["annotations"]] == [i["id"] for i in data["images"]]
            for image, annotation in zip(data["images"], data["annotations"]):
                captions.append(image["caption"])
                picture = np.array(Image.open(root / "train2014" / image["file_name"]))
                assert picture.shape[:2] == (image["height"], image["width"])
                polygons = mask_utils.frPyObjects(annotation["segmentation"], image["height"], image["width"])
                rle = mask_utils.merge(polygons)
                mask = decode_rle(rle, "polygons")
                assert abs(mask.sum() - annotation["area"]) < 1
                _assert_colour_inside(picture, mask, colour_of_annotation[annotation["original_id"]])
        if name == "refcoco":
            assert any(re.search(r"\b(left|right)\b", c) for c in captions)
        if name == "refcoco+":
            assert not any(location.search(c) for c in captions)
        refs = load_plain_pickle(root / name / ("refs(umd).p" if name == "refcocog" else "refs(unc).p"))
        keys = {"ref_id", "ann_id", "image_id", "category_id", "split", "file_name", "sent_ids", "sentences"}
        assert keys <= set(refs[0])
        assert re.fullmatch(r"COCO_train2014_\d{12}_\d+\.jpg", refs[0]["file_name"])


# ---------------------------------------------------------------- custom video
def test_video_file_and_sentences(roots):
    root = roots["video"]
    info = _json(root / "synthetic_video.json")
    frames = _decode_video(root / info["video"])
    assert frames.shape == (info["num_frames"], info["height"], info["width"], 3)
    assert [e["kind"] for e in info["expressions"]] == ["appearance", "motion"]
    objects = next(iter(_sidecar(root)["videos"]["video"].values()))["objects"]
    colours = {obj_id: COLOURS[obj["colour"]] for obj_id, obj in objects.items()}
    for expression in info["expressions"]:
        assert len(expression["masks"]) == info["num_frames"]
        for t, rle in enumerate(expression["masks"]):
            if rle is not None and mask_utils.area(rle) > 30:
                _assert_colour_inside(frames[t], decode_rle(rle, "mask_dict entry"), colours[str(expression["obj_ids"][0])])


# ---------------------------------------------------------------- command line
def test_command_line_writes_a_dataset_and_rejects_bad_options(tmp_path, capsys):
    tool = REPO / "tools" / "make_synthetic_data.py"
    done = subprocess.run([sys.executable, str(tool), "--dataset", "refcoco", "--root", str(tmp_path / "coco"),
                           "--seed", "2", "--num_images", "4"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "coco" / "train2014").glob("*.jpg"))) == 4
    assert make_synthetic_data(["--dataset", "ytvos", "--root", str(tmp_path / "y"), "--num_images", "4"]) == 2
    assert "num_images" in capsys.readouterr().err and not (tmp_path / "y").exists()


def test_size_options_change_the_output(tmp_path):
    root = make_dataset("mevis", tmp_path / "m", num_videos=2, num_valid_u_videos=1, num_valid_videos=1,
                        num_frames=5, height=64, width=96)
    meta = _json(root / "train/meta_expressions.json")["videos"]
    assert len(meta) == 2 and all(3 <= len(v["frames"]) <= 5 for v in meta.values())
    first = next(iter(meta))
    assert Image.open(root / "train/JPEGImages" / first / "00000.jpg").size in {(96, 64), (76, 64)}
    with pytest.raises(TypeError):
        make_dataset("mevis", tmp_path / "x", num_images=3)


def test_categories_belong_to_the_benchmark_vocabularies(roots):
    ytvos_meta = _json(roots["ytvos"] / "train/meta.json")["videos"]
    assert {o["category"] for v in ytvos_meta.values() for o in v["objects"].values()} <= set(YTVOS_CATEGORIES)
    for split in ("train", "valid"):
        davis_meta = _json(roots["davis"] / split / "meta.json")["videos"]
        assert {o["category"] for v in davis_meta.values() for o in v["objects"].values()} <= set(DAVIS_CATEGORIES)
