"""The ensemble CLI end to end on a synthetic world: outputs, abstentions, per-video failures, resumption after
SIGKILL, worker processes."""
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO_ROOT
from ensemble_world import RECIPE, make_world
from rvos.ensemble.recipe import load_recipe
from rvos.ensemble.runner import run_recipe

TOOL = REPO_ROOT / "tools" / "ensemble.py"


def tree(root: Path) -> dict:
    """relative path -> bytes of every file under root (partial files included, so none may be left)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def outputs(root: Path) -> dict:
    """The run's results (PNGs, key frames, records), without the zip whose bytes carry timestamps."""
    return {k: v for k, v in tree(root).items() if not k.endswith(".zip")}


@pytest.fixture
def world(tmp_path):
    meta = make_world(tmp_path / "w", videos=5)
    (tmp_path / "w" / "recipe.yaml").write_text(RECIPE)
    return tmp_path / "w", meta


def run(world_root: Path, output: Path, workers: int = 1):
    return run_recipe(load_recipe(world_root / "recipe.yaml", output=output), workers=workers, progress=False)


def test_outputs_rules_and_zip(world, tmp_path):
    root, meta = world
    report = run(root, tmp_path / "out")
    assert report.failures == {} and report.abstained == []
    video = "v02"  # three expressions: a pair and an unpaired one
    stores = {n: torch.load(root / f"{n}.pth", weights_only=True)[video] for n in "abc"}
    first = {}
    for group in (["0", "1"], ["2"]):
        votes = sum((stores[n][e]["mask_logits"].sigmoid() > 0.5).int() for n in "abc" for e in group)
        for e in group:
            first[e] = (votes >= (len(group) * 3 + 1) // 2).numpy()   # half: ties to foreground
    for exp_id, frame_masks in first.items():
        for t, frame in enumerate(meta[video]["frames"]):
            with Image.open(root / "d" / video / exp_id / f"{frame}.png") as d_png:
                d = np.asarray(d_png) == 255
            a = stores["a"][exp_id]["mask_logits"][t].sigmoid().numpy() > 0.5
            expected = (frame_masks[t].astype(int) + d + a) >= 2
            with Image.open(tmp_path / "out/Annotations" / video / exp_id / f"{frame}.png") as png:
                np.testing.assert_array_equal(np.asarray(png) == 255, expected)
    key_frames = json.loads((tmp_path / "out/key_frames.json").read_text())
    scores = [np.array(stores[n]["2"]["class_info"], dtype=np.float64) for n in "abc"]
    assert key_frames[video]["2"]["index_info"]["class_index"] == int(np.argmax(scores[0] * scores[1] * scores[2]))
    with zipfile.ZipFile(tmp_path / "out/submission.zip") as archive:
        names = archive.namelist()
    assert len(names) == sum(len(m["expressions"]) * len(m["frames"]) for m in meta.values())
    assert f"Annotations/{video}/2/00005.png" in names


def test_missing_expression_is_an_error_or_an_abstention(world, tmp_path):
    root, meta = world
    store = torch.load(root / "c.pth", weights_only=True)
    del store["v02"]["1"]
    torch.save(store, root / "c.pth")
    report = run(root, tmp_path / "out")
    assert list(report.failures) == ["v02"] and "lacks expressions ['1']" in report.failures["v02"]
    assert json.loads((tmp_path / "out/failures.json").read_text()) == report.failures
    assert not (tmp_path / "out/submission.zip").exists()
    assert (tmp_path / "out/Annotations/v03").is_dir()
    recipe = (root / "recipe.yaml").read_text().replace("c: {type: pth, path: c.pth}",
                                                        "c: {type: pth, path: c.pth, on_missing: abstain}")
    (root / "recipe.yaml").write_text(recipe)
    report = run(root, tmp_path / "out")
    assert report.failures == {} and report.done_before == 0   # another recipe: every video redone
    assert report.abstained == ["c abstains on v02/1: no prediction"]
    assert json.loads((tmp_path / "out/abstentions.json").read_text()) == {"v02": report.abstained}
    assert not (tmp_path / "out/failures.json").exists()


def test_cli_failure_exit_and_rerun(world, tmp_path):
    root, _ = world
    bad = root / "d/v01/0/00005.png"
    good = bad.read_bytes()
    bad.write_bytes(good[:20])
    cmd = [sys.executable, str(TOOL), str(root / "recipe.yaml"), "--output", str(tmp_path / "out"), "--no_progress"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 1, first.stderr
    assert "v01" in json.loads((tmp_path / "out/failures.json").read_text())
    assert "00005.png" in first.stderr
    bad.write_bytes(good)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "4 done before this run" in second.stderr


def test_two_processes_equal_one(world, tmp_path):
    root, _ = world
    run(root, tmp_path / "one")
    run(root, tmp_path / "two", workers=2)
    assert outputs(tmp_path / "two") == outputs(tmp_path / "one")


def test_killed_run_resumes_to_the_uninterrupted_result(world, tmp_path):
    """A real subprocess is SIGKILLed while blocked reading video v02 (one of its PNGs is a FIFO nobody writes);
    the rerun, with the real PNG back, skips v00 and v01 and equals an uninterrupted run."""
    root, _ = world
    run(root, tmp_path / "whole")
    png = root / "d/v02/0/00000.png"
    data = png.read_bytes()
    png.unlink()
    os.mkfifo(png)
    out = tmp_path / "out"
    cmd = [sys.executable, str(TOOL), str(root / "recipe.yaml"), "--output", str(out), "--no_progress"]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (out / "videos/v01.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        assert process.poll() is None, "the run should be blocked on the FIFO"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert (out / "Annotations/v01").is_dir() and not (out / "Annotations/v02").exists()
    assert not (out / "key_frames.json").exists() and not (out / "submission.zip").exists()
    png.unlink()
    png.write_bytes(data)
    before = (out / "Annotations/v00/0/00000.png").stat().st_mtime_ns
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert "2 of 5 videos are done already" in rerun.stderr
    assert (out / "Annotations/v00/0/00000.png").stat().st_mtime_ns == before
    assert outputs(out) == outputs(tmp_path / "whole")


def test_partial_video_folder_is_not_complete(world, tmp_path):
    """A video folder without its record (killed between the two) or a leftover partial folder is redone."""
    root, _ = world
    run(root, tmp_path / "whole")
    out = tmp_path / "out"
    run(root, out)
    (out / "videos/v03.json").unlink()
    (out / "Annotations/v03/0/00000.png").unlink()
    (out / "Annotations/.v04.partial/0").mkdir(parents=True)
    (out / "Annotations/v04").rename(out / "Annotations/.v04.partial/x")
    (out / "videos/v04.json").unlink()
    report = run(root, out)
    assert report.done_before == 3
    assert outputs(out) == outputs(tmp_path / "whole")


def test_rerun_skips_finished_videos_of_the_same_recipe_only(world, tmp_path):
    root, _ = world
    out = tmp_path / "out"
    assert run(root, out).done_before == 0
    assert run(root, out).done_before == 5
    (root / "recipe.yaml").write_text(RECIPE.replace("min_votes: majority", "min_votes: 1"))
    assert run(root, out).done_before == 0


def test_a_source_at_another_size_fails_its_video_only(world, tmp_path):
    """Every mask of one expression of the PNG source d at half size: that video fails naming d's folder and both
    shapes; the others are written; once fixed, the rerun does that video only."""
    root, meta = world
    folder = root / "d/v01/0"
    originals = {png: png.read_bytes() for png in folder.iterdir()}
    for png in originals:
        with Image.open(png) as image:
            image.resize((image.width // 2, image.height // 2), Image.NEAREST).save(png)
    report = run(root, tmp_path / "out")
    assert list(report.failures) == ["v01"], report.failures
    message = report.failures["v01"]
    h, w = meta["v01"]["size"]
    assert f"source d ({folder})" in message and f"[3, {h // 2}, {w // 2}]" in message and f"[3, {h}, {w}]" in message
    assert sorted(p.name for p in (tmp_path / "out/Annotations").iterdir()) == ["v00", "v02", "v03", "v04"]
    for png, data in originals.items():
        png.write_bytes(data)
    report = run(root, tmp_path / "out")
    assert report.failures == {} and report.done_before == 4


def test_a_damaged_npz_source_fails_its_video_only(world, tmp_path):
    """A --save_logits store with one truncated file: that video fails with the file named (before, the whole run
    stopped on a BadZipFile); the other videos are written."""
    root, meta = world
    rng = np.random.default_rng(7)
    for video, entry in meta.items():
        frames = entry["frames"]
        for exp_id in entry["expressions"]:
            path = root / "e" / video / f"{exp_id}.npz"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(path, mask_probs=rng.random((len(frames), 3, 4)).astype(np.float16),
                                frame_scores=rng.random(len(frames)).astype(np.float32), frames=np.array(frames),
                                orig_size=np.array(entry["size"]), input_size=np.array([12, 16]),
                                format_version=np.array(1))
    damaged = root / "e/v03/0.npz"
    damaged.write_bytes(damaged.read_bytes()[:-30])
    (root / "npz.yaml").write_text("meta: meta.json\nsources:\n  a: {type: pth, path: a.pth}\n"
                                   "  e: {type: npz, path: e}\nrounds:\n  - {name: both, op: vote, inputs: [a, e], "
                                   "min_votes: 1}\n")
    report = run_recipe(load_recipe(root / "npz.yaml", output=tmp_path / "out"), progress=False)
    assert list(report.failures) == ["v03"] and f"cannot read {damaged}" in report.failures["v03"]
    assert sorted(p.name for p in (tmp_path / "out/Annotations").iterdir()) == ["v00", "v01", "v02", "v04"]


def test_a_deleted_or_damaged_output_png_redoes_its_video(world, tmp_path, caplog):
    """A finished video is recognised by its PNGs, each whole, not by its folder: a deleted PNG and a truncated one
    redo their videos (which used to fail at the zip on every rerun, or be zipped truncated)."""
    root, _ = world
    out = tmp_path / "out"
    run(root, out)
    whole = outputs(out)
    (out / "Annotations/v01/0/00005.png").unlink()
    damaged = out / "Annotations/v03/0/00000.png"
    damaged.write_bytes(damaged.read_bytes()[:-12])
    with caplog.at_level("WARNING"):
        report = run(root, out)
    assert report.failures == {} and report.done_before == 3
    assert f"{damaged} is damaged" in caplog.text
    assert outputs(out) == whole
