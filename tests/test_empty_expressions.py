"""An empty expression sentence is named (file + expression) by the checker, the training loaders and inference,
instead of being trained or segmented as a real sentence."""
import csv
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from rvos.datasets.a2d import derive_single_frame_annotations
from rvos.datasets.checks import check_dataset
from rvos.datasets.registry import build_dataset
from rvos.datasets.synthetic import make_dataset
from rvos.predict import build_benchmark

SIZES = {"ytvos": dict(num_videos=2, num_valid_videos=1, num_test_videos=1),
         "mevis": dict(num_train_videos=2, num_valid_u_videos=1, num_valid_videos=1),
         "davis": {}, "a2d": dict(num_frames=10), "jhmdb": dict(num_frames=8), "refcoco": {}}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    base = tmp_path_factory.mktemp("empty_expressions")
    return {name: make_dataset(name, base / name, seed=4, **sizes) for name, sizes in SIZES.items()}


@pytest.fixture
def copy_of(clean, tmp_path):
    return lambda name: Path(shutil.copytree(clean[name], tmp_path / name))


def _edit_json(path: Path, change) -> object:
    """Apply ``change`` to the parsed JSON file in place; returns the changed data."""
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return data


def _edit_csv(path: Path, change) -> list:
    """Apply ``change`` to the rows of a CSV file in place; returns the changed rows."""
    rows = list(csv.reader(path.open(encoding="utf-8")))
    change(rows)
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    return rows


def _blank_first_expression(meta_path: Path, text: str = "  ") -> tuple:
    meta = json.loads(meta_path.read_text())
    video = next(iter(meta["videos"]))
    exp_id = next(iter(meta["videos"][video]["expressions"]))
    meta["videos"][video]["expressions"][exp_id]["exp"] = text
    meta_path.write_text(json.dumps(meta))
    return video, exp_id


META_FILES = {"ytvos": "meta_expressions/train/meta_expressions.json", "mevis": "train/meta_expressions.json",
              "davis": "meta_expressions/valid/meta_expressions.json"}


@pytest.mark.parametrize("name", sorted(META_FILES))
def test_checker_names_an_empty_meta_expression(copy_of, name):
    root = copy_of(name)
    meta = root / META_FILES[name]
    video, exp_id = _blank_first_expression(meta)
    problems = check_dataset(name, root)
    assert [(p.path, p.message) for p in problems] == [(meta, f"video {video} expression {exp_id}: empty 'exp' "
                                                              "text '  '")]


def test_checker_names_empty_a2d_jhmdb_and_refcoco_sentences(copy_of):
    a2d = copy_of("a2d")
    text_file = a2d / "text_annotations" / "a2d_annotation.txt"
    _edit_csv(text_file, lambda rows: rows[1].__setitem__(2, ""))
    derived = a2d / "a2d_sentences_single_frame_train_annotations.json"
    _edit_json(derived, lambda samples: samples[0].__setitem__(0, " "))
    problems = {(p.path, p.message.split(":")[0]) for p in check_dataset("a2d", a2d)}
    assert problems == {(text_file, "data row 1"), (derived, "entry 0")}

    jhmdb = copy_of("jhmdb")
    metadata = jhmdb / "jhmdb_sentences_samples_metadata.json"
    _edit_json(metadata, lambda samples: samples[1].__setitem__(4, ""))
    assert [(p.path, p.message.split(":")[0]) for p in check_dataset("jhmdb", jhmdb)] == [(metadata, "entry 1")]

    coco = copy_of("refcoco")
    split_file = coco / "refcoco" / "instances_refcoco_train.json"
    data = _edit_json(split_file, lambda data: data["images"][2].__setitem__("caption", ""))
    problems = check_dataset("refcoco", coco)
    assert [(p.path, p.message) for p in problems] == [(split_file, f"image entry {data['images'][2]['id']}: "
                                                                    "empty 'caption' ''")]


@pytest.mark.parametrize("name", sorted(META_FILES))
def test_training_loaders_refuse_an_empty_meta_expression(copy_of, name):
    root = copy_of(name)
    meta = root / META_FILES[name].replace("valid", "train")
    video, exp_id = _blank_first_expression(meta, text="")
    args = SimpleNamespace(**{f"{name}_path": str(root)}, num_frames=2, max_size=640, clip_reverse_prob=0.0)
    with pytest.raises(ValueError, match=rf"{meta}: expression '{exp_id}' of video '{video}' has no expression "
                                         r"text \(''\)"):
        build_dataset("train", args, dataset_file=name)


def test_a2d_jhmdb_and_refcoco_loaders_refuse_empty_sentences(copy_of):
    a2d = copy_of("a2d")
    derived = a2d / "a2d_sentences_single_frame_train_annotations.json"
    _edit_json(derived, lambda samples: samples[3].__setitem__(0, ""))
    with pytest.raises(ValueError, match=rf"{derived}: entry 3 has no expression text"):
        build_dataset("train", SimpleNamespace(a2d_path=str(a2d), num_frames=2, max_size=640), dataset_file="a2d")
    subsets = {row[0]: row[8] for row in csv.reader((a2d / "Release" / "videoset.csv").open(encoding="utf-8"))}
    text_file = a2d / "text_annotations" / "a2d_annotation.txt"
    rows = _edit_csv(text_file, lambda rows: rows[2].__setitem__(2, "   "))
    with pytest.raises(ValueError, match=rf"{text_file}: line 3 \(video {rows[2][0]}\) has no expression text"):
        derive_single_frame_annotations(a2d, "train" if subsets[rows[2][0]] == "0" else "val")

    jhmdb = copy_of("jhmdb")
    metadata = jhmdb / "jhmdb_sentences_samples_metadata.json"
    samples = _edit_json(metadata, lambda samples: samples[0].__setitem__(4, "\t"))
    with pytest.raises(ValueError, match=rf"{metadata}: entry 0 \(video {samples[0][0]}\) has no expression text"):
        build_dataset("val", SimpleNamespace(jhmdb_path=str(jhmdb), num_frames=2), dataset_file="jhmdb")

    coco = copy_of("refcoco")
    split_file = coco / "refcoco" / "instances_refcoco_val.json"
    data = _edit_json(split_file, lambda data: data["images"][0].pop("caption"))
    with pytest.raises(ValueError, match=rf"{split_file}: image {data['images'][0]['id']} \(its 'caption'\) has no "
                                         r"expression text \(None\)"):
        build_dataset("val", SimpleNamespace(coco_path=str(coco), masks=True), dataset_file="refcoco")


@pytest.mark.parametrize("name, split", [("ytvos", "valid"), ("mevis", "valid"), ("davis", "valid")])
def test_inference_refuses_an_empty_expression_before_computing(copy_of, tmp_path, name, split):
    root = copy_of(name)
    meta = root / (f"meta_expressions/{split}/meta_expressions.json" if name != "mevis" else f"{split}/"
                   "meta_expressions.json")
    video, exp_id = _blank_first_expression(meta)
    args = SimpleNamespace(dataset_file=name, split=split, output_dir=str(tmp_path / "out"), video=None,
                           **{f"{name}_path": str(root)}, sub_video_len=30, no_sampling=False, davis_clip_len=36,
                           threshold=0.5, save_logits=False)
    with pytest.raises(ValueError, match=rf"{meta}: expression '{exp_id}' of video '{video}' has no expression text"):
        build_benchmark(args).jobs()


def test_custom_video_refuses_an_empty_text(clean, tmp_path):
    frames = next((clean["ytvos"] / "valid" / "JPEGImages").iterdir())
    args = SimpleNamespace(dataset_file="ytvos", video=str(frames), text=["a dog", " "], output_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"--text: expression 1 has no expression text \(' '\)"):
        build_benchmark(args).jobs()
