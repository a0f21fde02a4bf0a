"""SgMg and MUTR through the shared scripts: 2-process DDP training with main.py, then inference.py on the
Ref-YouTube-VOS and MeViS layouts (MeViS with --sub_video_len windows, interleaved and contiguous)."""
import json
import sys
from pathlib import Path

import pytest

from rvos.datasets.synthetic import make_dataset
from train_support import REPO_ROOT, run_checked

# SgMg's spectral fusion needs >= 3x3 maps at stride 64, hence 192-pixel frames for every variant here.
HEIGHT, WIDTH = 192, 320
VARIANTS = ("sgmg", "mutr")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("variants_world")
    run_checked([sys.executable, "tools/make_tiny_text_encoder.py", "--out", str(base / "text_encoder")])
    sizes = dict(num_frames=6, min_frames=5, height=HEIGHT, width=WIDTH)
    return {"text_encoder": base / "text_encoder",
            "ytvos": make_dataset("ytvos", base / "ytvos", seed=1, num_videos=2, num_valid_videos=1,
                                  num_test_videos=1, **sizes),
            "mevis": make_dataset("mevis", base / "mevis", seed=1, num_videos=1, num_valid_u_videos=1,
                                  num_valid_videos=1, **sizes)}


def config(variant: str) -> str:
    return str(REPO_ROOT / "configs" / "tiny" / f"{variant}_tiny_synthetic.yaml")


@pytest.fixture(scope="module", params=VARIANTS)
def trained(request, world, tmp_path_factory):
    """(variant, checkpoint) after 2 iterations of 2-process DDP training."""
    variant = request.param
    out = tmp_path_factory.mktemp(f"{variant}_train")
    run_checked([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "main.py",
                 "--config", config(variant), "--text_encoder", str(world["text_encoder"]),
                 "--ytvos_path", str(world["ytvos"]), "--device", "cpu", "--batch_size", "1", "--num_workers", "0",
                 "--num_frames", "2", "--max_size", str(WIDTH), "--epochs", "1", "--max_iters_per_epoch", "2",
                 "--output_dir", str(out)], timeout=300)
    checkpoint = out / "checkpoint.pth"
    assert checkpoint.is_file()
    return variant, checkpoint


def expected_pngs(meta_path: Path, videos=None) -> set:
    meta = json.loads(meta_path.read_text())["videos"]
    return {f"{video}/{exp_id}/{frame}.png" for video, entry in meta.items() if videos is None or video in videos
            for exp_id in entry["expressions"] for frame in entry["frames"]}


def written_pngs(folder: Path) -> set:
    return {str(p.relative_to(folder)) for p in folder.rglob("*.png")}


def infer(checkpoint: Path, world, out: Path, *extra: str):
    run_checked([sys.executable, "inference.py", "--resume", str(checkpoint), "--text_encoder",
                 str(world["text_encoder"]), "--device", "cpu", "--msda_impl", "pytorch", "--num_workers", "0",
                 "--test_short_side", str(HEIGHT), "--output_dir", str(out), *extra], timeout=300)


def test_ytvos_inference(trained, world, tmp_path):
    _, checkpoint = trained
    infer(checkpoint, world, tmp_path, "--dataset_file", "ytvos", "--ytvos_path", str(world["ytvos"]))
    valid_videos = {p.name for p in (world["ytvos"] / "valid" / "JPEGImages").iterdir()}
    meta = world["ytvos"] / "meta_expressions" / "valid" / "meta_expressions.json"
    assert written_pngs(tmp_path / "valid") == expected_pngs(meta, valid_videos)


@pytest.mark.parametrize("mode", [[], ["--no_sampling"]], ids=["interleaved", "contiguous"])
def test_mevis_inference_with_sub_videos(trained, world, tmp_path, mode):
    _, checkpoint = trained
    infer(checkpoint, world, tmp_path, "--dataset_file", "mevis", "--mevis_path", str(world["mevis"]),
          "--split", "valid_u", "--sub_video_len", "2", *mode)
    meta = world["mevis"] / "valid_u" / "meta_expressions.json"
    assert written_pngs(tmp_path / "valid_u" / "Annotations") == expected_pngs(meta)
