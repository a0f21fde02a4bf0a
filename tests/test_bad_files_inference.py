"""inference.py and the submission checker on damaged files: each is named with what is wrong, and nothing already
computed is lost (a rerun computes only what is missing)."""
import shutil
import zipfile
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch

from rvos.datasets.synthetic import make_dataset
from rvos.models.text_encoder import TextEncoderFileError
from rvos.predict.benchmarks.ytvos import YTVOSBenchmark
from rvos.predict.submission import check_submission
from rvos.predict.writers import load_logits, npz_problem, png_problem
from test_inference_fixtures import base_args, read_pngs, run_inference, write_checkpoint, write_text_encoder
from test_write_failures import run_child


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_files_inference")
    text_encoder = write_text_encoder(root / "text_encoder")
    return {"root": root, "text_encoder": text_encoder,
            "checkpoint": write_checkpoint(root / "checkpoint.pth", text_encoder),
            "ytvos": make_dataset("ytvos", root / "ytvos", seed=5, num_videos=1, num_valid_videos=2,
                                  num_test_videos=1, num_frames=4, min_frames=4)}


def ytvos_argv(world, out, text_encoder=None):
    return base_args(world["checkpoint"], text_encoder or world["text_encoder"], out) + [
        "--dataset_file", "ytvos", "--ytvos_path", str(world["ytvos"]), "--num_workers", "1"]


def mtimes(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*.png")}


@pytest.fixture(scope="module")
def finished(world):
    out = world["root"] / "finished"
    assert run_inference(ytvos_argv(world, out)) == 0
    return out


def test_a_truncated_png_in_a_finished_unit_is_found_and_redone(world, finished, tmp_path):
    out = Path(shutil.copytree(finished, tmp_path / "out"))
    expected = read_pngs(finished / "valid")
    damaged = sorted((out / "valid").rglob("*.png"))[5]
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 2])
    unit = damaged.parent
    before = mtimes(out / "valid")
    assert run_inference(ytvos_argv(world, out)) == 0
    assert png_problem(damaged) is None
    got = read_pngs(out / "valid")
    assert got.keys() == expected.keys() and all(np.array_equal(got[k], expected[k]) for k in got)
    after = mtimes(out / "valid")
    redone = {p for p in after if after[p] != before.get(p)}
    assert redone == set(unit.glob("*.png"))  # only the damaged unit was computed again
    assert f"{damaged} is damaged (" in (out / "inference.log").read_text()
    assert check_submission(out / "submission_ytvos_valid.zip", _entries(world, finished)) == []


def test_a_truncated_save_logits_file_is_found_and_redone(world, tmp_path):
    """A ``--save_logits`` npz cut short (a kill or a full disk during an older writer) was taken as done by its
    name; it is verified like the PNGs, reported and computed again, and nothing else is."""
    out = tmp_path / "out"
    assert run_inference(ytvos_argv(world, out) + ["--save_logits"]) == 0
    stores = sorted((out / "valid" / "logits").rglob("*.npz"))
    expected = {p: load_logits(p) for p in stores}
    damaged = stores[1]
    damaged.write_bytes(damaged.read_bytes()[:-50])
    assert npz_problem(damaged) is not None
    before = {p: p.stat().st_mtime_ns for p in stores}
    assert run_inference(ytvos_argv(world, out) + ["--save_logits"]) == 0
    assert npz_problem(damaged) is None
    assert all(np.array_equal(load_logits(p)[key], expected[p][key]) for p in stores for key in expected[p])
    assert [p for p in stores if p.stat().st_mtime_ns != before[p]] == [damaged]
    assert f"{damaged} is damaged (" in (out / "inference.log").read_text()


def test_a_rerun_with_other_weights_or_threshold_is_refused_before_any_work(world, finished, tmp_path):
    """A rerun into a finished folder with another --threshold or another checkpoint used to keep the old masks
    (mixing two runs in one submission): it stops with the differing options and changes nothing. The same
    checkpoint under another name is the same run."""
    out = Path(shutil.copytree(finished, tmp_path / "out"))
    before = mtimes(out / "valid")
    other = torch.load(world["checkpoint"], weights_only=True)
    first = next(iter(other["model"]))
    other["model"][first] = other["model"][first] + 1e-3
    torch.save(other, tmp_path / "other.pth")
    for option, argv, difference in [
            ("threshold", ytvos_argv(world, out) + ["--threshold", "0.7"], "threshold: 0.5 in the folder, 0.7 now"),
            ("weights", ytvos_argv(world, out) + ["--resume", str(tmp_path / "other.pth")], "weights: 'sha256:")]:
        assert run_inference(argv) == 2, option
        log = (out / "inference.log").read_text()
        assert f"{out / 'valid'} holds predictions of a run with other options" in log and difference in log
        assert mtimes(out / "valid") == before, f"another {option} changed the folder"
    shutil.copy(world["checkpoint"], tmp_path / "renamed.pth")
    assert run_inference(ytvos_argv(world, out) + ["--resume", str(tmp_path / "renamed.pth")]) == 0
    assert mtimes(out / "valid") == before


def _entries(world, out):
    benchmark = YTVOSBenchmark(Namespace(ytvos_path=str(world["ytvos"]), split="valid", output_dir=str(out)))
    return list(benchmark.submission_entries(benchmark.jobs(), predictions=False))


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")  # the doubled zip is written on purpose
def test_a_name_stored_twice_in_a_submission_is_reported(world, finished, tmp_path):
    entries = _entries(world, finished)
    source = finished / "submission_ytvos_valid.zip"
    doubled = tmp_path / "doubled.zip"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(doubled, "w") as copy:
        names = original.namelist()
        for name in names:
            copy.writestr(name, original.read(name))
        copy.writestr(names[3], original.read(names[3]))
    assert check_submission(source, entries) == []
    assert check_submission(doubled, entries) == [f"{names[3]}: stored 2 times (the server keeps one of them, "
                                                  "unpredictably)"]


@pytest.mark.parametrize("damage", ["vocab.json", "merges.txt"])
def test_a_broken_tokenizer_stops_the_run_once_before_any_video(world, finished, tmp_path, damage):
    text_encoder = Path(shutil.copytree(world["text_encoder"], tmp_path / "text_encoder"))
    broken = text_encoder / damage
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    out = Path(shutil.copytree(finished, tmp_path / "out"))
    shutil.rmtree(next((out / "valid").iterdir()))  # one video left to compute
    before = mtimes(out / "valid")
    with pytest.raises(TextEncoderFileError, match=str(broken) if damage == "vocab.json" else str(text_encoder)):
        run_inference(ytvos_argv(world, out, text_encoder))
    assert mtimes(out / "valid") == before
    assert not (out / "valid" / "failures.json").exists()


def test_a_non_utf8_meta_file_is_named(world, tmp_path):
    root = Path(shutil.copytree(world["ytvos"], tmp_path / "ytvos"))
    meta = root / "meta_expressions" / "valid" / "meta_expressions.json"
    meta.write_bytes(meta.read_text(encoding="utf-8").encode("utf-16"))
    argv = ytvos_argv(dict(world, ytvos=root), tmp_path / "out")
    with pytest.raises(ValueError, match=rf"{meta}: not UTF-8 text \(byte b'\\xff' at offset 0\)"):
        run_inference(argv)
    assert not (tmp_path / "out" / "valid").exists()


def test_inference_whose_zip_hits_a_full_disk_keeps_its_masks_and_a_rerun_only_zips(world, finished, tmp_path):
    """The zip is written in a child process under a file-size limit that the masks and the log fit in but the zip
    does not (see ``test_write_failures``)."""
    zip_size = (finished / "submission_ytvos_valid.zip").stat().st_size
    largest_other = max(p.stat().st_size for p in finished.rglob("*") if p.is_file() and p.suffix != ".zip")
    limit = largest_other + 4096
    assert zip_size > limit, (zip_size, largest_other)
    out = tmp_path / "out"
    result = run_child("inference", out, limit, ytvos_argv(world, out))
    assert result.returncode != 0
    assert f"cannot write the submission zip {out / 'submission_ytvos_valid.zip'}: no room for it" in result.stderr
    masks = {p: p.stat().st_mtime_ns for p in (out / "valid").rglob("*.png")}
    assert len(masks) == sum(1 for _ in (finished / "valid").rglob("*.png"))
    assert sorted(p.name for p in out.iterdir()) == ["inference.log", "valid"]  # no partial zip is left
    assert run_inference(ytvos_argv(world, out)) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "valid").rglob("*.png")} == masks  # nothing computed again
    assert check_submission(out / "submission_ytvos_valid.zip", _entries(world, out)) == []
