"""The submission zips and their checker, on synthetic Ref-YouTube-VOS and MeViS whose held-out ground truth
(``_synthetic_gt``, {0, 255} PNGs in the prediction layout) stands in for predictions."""
import io
import zipfile
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rvos.predict.benchmarks.mevis import MeViSBenchmark
from rvos.predict.submission import binary_mask_entries, check_submission, write_zip
from rvos.predict.benchmarks.ytvos import YTVOSBenchmark
from rvos.datasets.synthetic import HELD_OUT_DIR, make_dataset
from rvos.tools.check_submission import main as check_main


@pytest.fixture(scope="module")
def ytvos(tmp_path_factory):
    root = make_dataset("ytvos", tmp_path_factory.mktemp("ytvos"), seed=1)
    benchmark = YTVOSBenchmark(Namespace(ytvos_path=str(root), split="valid"))
    jobs = benchmark.jobs()
    gt = root / HELD_OUT_DIR / "valid" / "Annotations"
    zip_path = write_zip(binary_mask_entries(jobs, lambda job, exp_id: gt / job.name / exp_id, "Annotations"),
                         tmp_path_factory.mktemp("zips") / "clean.zip")
    return root, benchmark, jobs, zip_path


def read_zip(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_variant(path: Path, files: dict) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def png_bytes(array: np.ndarray, mode: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def problems_of(ytvos, files: dict, tmp_path: Path):
    root, benchmark, jobs, _ = ytvos
    zip_path = write_variant(tmp_path / "variant.zip", files)
    problems = check_submission(zip_path, benchmark.submission_entries(jobs, predictions=False))
    exit_code = check_main([str(zip_path), "--dataset_file", "ytvos", "--ytvos_path", str(root)])
    assert (exit_code == 0) == (not problems)
    return problems


def test_clean_zip_passes(ytvos, tmp_path):
    root, _, jobs, zip_path = ytvos
    assert check_main([str(zip_path), "--dataset_file", "ytvos", "--ytvos_path", str(root)]) == 0
    names = read_zip(zip_path)
    assert len(names) == sum(len(job.expressions) * len(job.frame_names) for job in jobs)
    assert all(name.startswith("Annotations/") for name in names)


def test_missing_frame(ytvos, tmp_path):
    files = read_zip(ytvos[3])
    dropped = sorted(files)[3]
    del files[dropped]
    assert problems_of(ytvos, files, tmp_path) == [f"missing frame {dropped}"]


def test_missing_expression(ytvos, tmp_path):
    files = read_zip(ytvos[3])
    video, exp_id = sorted(files)[0].split("/")[1:3]
    prefix = f"Annotations/{video}/{exp_id}/"
    count = sum(name.startswith(prefix) for name in files)
    files = {name: data for name, data in files.items() if not name.startswith(prefix)}
    assert problems_of(ytvos, files, tmp_path) == [f"missing expression {exp_id} of video {video} (all {count} frames)"]


def test_wrong_size_mask(ytvos, tmp_path):
    files = read_zip(ytvos[3])
    name = sorted(files)[-1]
    with Image.open(io.BytesIO(files[name])) as image:
        smaller = np.asarray(image.resize((image.width // 2, image.height // 2), Image.NEAREST))
    files[name] = png_bytes(smaller, "L")
    problems = problems_of(ytvos, files, tmp_path)
    assert len(problems) == 1 and problems[0].startswith(f"{name}: size")


def test_not_binary_and_not_single_channel(ytvos, tmp_path):
    files = read_zip(ytvos[3])
    first, second = sorted(files)[:2]
    with Image.open(io.BytesIO(files[first])) as image:
        mask = np.asarray(image)
    files[first] = png_bytes(np.where(mask > 0, 1, 0).astype(np.uint8), "L")
    files[second] = png_bytes(np.stack([mask] * 3, axis=-1), "RGB")
    problems = problems_of(ytvos, files, tmp_path)
    assert len(problems) == 2
    assert problems[0].startswith(f"{first}: not binary") and problems[1].startswith(f"{second}: not single-channel")


def test_extra_file_and_wrong_root(ytvos, tmp_path):
    files = read_zip(ytvos[3])
    files["Annotations/readme.txt"] = b"hello"
    assert problems_of(ytvos, files, tmp_path) == ["unexpected file Annotations/readme.txt"]
    unprefixed = {name[len("Annotations/"):]: data for name, data in read_zip(ytvos[3]).items()}
    problems = problems_of(ytvos, unprefixed, tmp_path)
    assert problems[-1].startswith("no expected file found: check the archive root")


def test_mevis_zip_has_videos_at_the_root(tmp_path):
    root = make_dataset("mevis", tmp_path / "mevis", seed=0)
    benchmark = MeViSBenchmark(Namespace(mevis_path=str(root), split="valid"))
    jobs = benchmark.jobs()
    gt = root / HELD_OUT_DIR / "valid" / "Annotations"
    zip_path = write_zip(binary_mask_entries(jobs, lambda job, exp_id: gt / job.name / exp_id, ""),
                         tmp_path / "mevis.zip")
    assert check_main([str(zip_path), "--dataset_file", "mevis", "--mevis_path", str(root)]) == 0
    prefixed = write_variant(tmp_path / "prefixed.zip", {f"Annotations/{k}": v for k, v in read_zip(zip_path).items()})
    assert check_main([str(prefixed), "--dataset_file", "mevis", "--mevis_path", str(root)]) == 1


def test_truncated_png_is_named(ytvos, tmp_path):
    """A PNG cut after its image data still decodes; its missing end chunk is found and the file named."""
    files = read_zip(ytvos[3])
    name = sorted(files)[1]
    files[name] = files[name][:-12]
    problems = problems_of(ytvos, files, tmp_path)
    assert len(problems) == 1 and problems[0].startswith(f"{name}: unreadable PNG"), problems
