"""tools/check_dataset.py and datasets.checks: clean synthetic data passes, damage is named by file."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from rvos.datasets.checks import check_dataset, inspect_dataset
from rvos.datasets.synthetic import make_dataset
from rvos.tools.check_dataset import main as check_dataset_cli

REPO = Path(__file__).resolve().parents[1]
CHECKED = {  # checker name -> synthetic dataset it reads
    "ytvos": "ytvos", "davis": "davis", "mevis": "mevis", "a2d": "a2d", "jhmdb": "jhmdb",
    "refcoco": "refcoco", "refcoco+": "refcoco", "refcocog": "refcoco",
}
SMALLER = {"a2d": {"num_frames": 10}, "jhmdb": {"num_frames": 8}}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    base = tmp_path_factory.mktemp("clean")
    names = sorted(set(CHECKED.values()))
    return {name: make_dataset(name, base / name, seed=1, **SMALLER.get(name, {})) for name in names}


@pytest.fixture
def copy_of(clean, tmp_path):
    def make(name):
        return Path(shutil.copytree(clean[name], tmp_path / name))
    return make


def _paths(problems):
    return {p.path for p in problems}


@pytest.mark.parametrize("checker", sorted(CHECKED))
def test_generated_data_is_clean(clean, checker):
    report = inspect_dataset(checker, clean[CHECKED[checker]])
    assert report.problems == []
    assert report.counts and all(value >= 0 for counts in report.counts.values() for value in counts.values())


def test_counts_are_reported_per_split(clean):
    counts = inspect_dataset("ytvos", clean["ytvos"]).counts
    assert set(counts) == {"train", "valid", "test"}
    train_videos = len(list((clean["ytvos"] / "train/JPEGImages").iterdir()))
    assert counts["train"]["videos"] == train_videos


def test_missing_frame_is_named(copy_of):
    root = copy_of("ytvos")
    frame = sorted((root / "train/JPEGImages").rglob("*.jpg"))[3]
    frame.unlink()
    problems = check_dataset("ytvos", root)
    assert frame in _paths(problems)
    assert any("missing" in p.message for p in problems if p.path == frame)


def test_truncated_jpeg_is_named(copy_of):
    root = copy_of("mevis")
    frame = sorted((root / "valid_u/JPEGImages").rglob("*.jpg"))[2]
    data = frame.read_bytes()
    frame.write_bytes(data[: len(data) // 2])
    problems = check_dataset("mevis", root)
    assert _paths(problems) == {frame}


def test_truncated_jpeg_is_named_even_when_pil_tolerates_truncation(copy_of, monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    root = copy_of("ytvos")
    frame = sorted((root / "test/JPEGImages").rglob("*.jpg"))[1]
    data = frame.read_bytes()
    frame.write_bytes(data[: 2 * len(data) // 3])
    assert _paths(check_dataset("ytvos", root)) == {frame}


def test_truncated_mask_dict_is_named(copy_of):
    root = copy_of("mevis")
    mask_dict = root / "train/mask_dict.json"
    data = mask_dict.read_bytes()
    mask_dict.write_bytes(data[: len(data) // 3])
    problems = check_dataset("mevis", root)
    assert mask_dict in _paths(problems)
    assert any("JSON" in p.message for p in problems if p.path == mask_dict)


@pytest.mark.parametrize("name", ["ytvos", "mevis", "davis"])
def test_expression_whose_video_is_missing_is_named(copy_of, name):
    root = copy_of(name)
    split = "train" if name != "mevis" else "valid"
    video = sorted((root / split / "JPEGImages").iterdir())[0]
    shutil.rmtree(video)
    problems = check_dataset(name, root)
    assert video in _paths(problems)
    assert any("missing video folder" in p.message for p in problems if p.path == video)


def test_mask_of_the_wrong_size_is_named(copy_of):
    root = copy_of("davis")
    png = sorted((root / "valid/Annotations").rglob("*.png"))[4]
    image = Image.open(png)
    small = image.resize((image.width // 2, image.height // 2))
    small.putpalette(image.getpalette())
    small.save(png)
    problems = check_dataset("davis", root)
    assert png in _paths(problems)
    assert any("size" in p.message for p in problems if p.path == png)


def test_untransposed_a2d_mask_is_named(copy_of):
    root = copy_of("a2d")
    h5 = sorted((root / "text_annotations/a2d_annotation_with_instances").rglob("*.h5"))[0]
    with h5py.File(h5, "r+") as handle:
        masks = np.array(handle["reMask"])
        del handle["reMask"]
        handle["reMask"] = np.swapaxes(masks, -1, -2)
    problems = check_dataset("a2d", root)
    assert h5 in _paths(problems)


def test_corrupt_jhmdb_mat_is_named(copy_of):
    root = copy_of("jhmdb")
    mat = sorted(root.rglob("puppet_mask.mat"))[1]
    mat.write_bytes(b"not a mat file")
    problems = check_dataset("jhmdb", root)
    assert _paths(problems) == {mat}


def test_refcoco_missing_image_is_named(copy_of):
    root = copy_of("refcoco")
    image = sorted((root / "train2014").glob("*.jpg"))[0]
    image.unlink()
    for name in ("refcoco", "refcocog"):
        assert image in _paths(check_dataset(name, root))


def test_every_problem_is_collected_and_split_filter_applies(copy_of):
    root = copy_of("ytvos")
    train_frame = sorted((root / "train/JPEGImages").rglob("*.jpg"))[0]
    valid_frame = sorted((root / "valid/JPEGImages").rglob("*.jpg"))[0]
    train_frame.unlink()
    valid_frame.unlink()
    assert {train_frame, valid_frame} <= _paths(check_dataset("ytvos", root))
    assert _paths(check_dataset("ytvos", root, split="valid")) == {valid_frame}


def test_command_line_runs_as_a_script(clean):
    tool = REPO / "tools" / "check_dataset.py"
    ok = subprocess.run([sys.executable, str(tool), "--dataset_file", "mevis", "--mevis_path", str(clean["mevis"])],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "train:" in ok.stdout and "videos" in ok.stdout


def test_command_line_exit_status_names_the_file(copy_of, capsys):
    root = copy_of("mevis")
    frame = sorted((root / "train/JPEGImages").rglob("*.jpg"))[0]
    frame.unlink()
    assert check_dataset_cli(["--dataset_file", "mevis", "--mevis_path", str(root)]) == 1
    assert str(frame) in capsys.readouterr().out
    assert check_dataset_cli(["--dataset_file", "mevis", "--mevis_path", str(root), "--split", "nope"]) == 2


def test_unknown_category_is_named(copy_of):
    root = copy_of("ytvos")
    meta_path = root / "train/meta.json"
    meta = json.loads(meta_path.read_text())
    video = next(iter(meta["videos"].values()))
    next(iter(video["objects"].values()))["category"] = "unicorn"
    meta_path.write_text(json.dumps(meta))
    problems = check_dataset("ytvos", root)
    assert _paths(problems) == {meta_path} and "unicorn" in problems[0].message
