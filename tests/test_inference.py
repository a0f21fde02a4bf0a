"""inference.py on the synthetic world: every benchmark's layout, shared vs per-expression equality, failure
isolation and resume, the custom-video path, checkpoints."""
import json
import shutil
import zipfile
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rvos import opts
from rvos.predict.base import sub_video_windows
from rvos.predict.model import build_inference_model
from rvos.predict.runner import balance
from rvos.predict.writers import load_logits
from rvos.predict.benchmarks.ytvos import read_meta_videos
from rvos.datasets.synthetic import make_dataset
from rvos.models.checkpoint import CheckpointMismatchError
from test_inference_fixtures import TINY_CONFIG, assets_fixture, base_args, read_pngs, run_inference  # noqa: F401
from rvos.util.video_io import read_video_frames

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def valid_videos(root: Path) -> dict:
    valid = read_meta_videos(root / "meta_expressions" / "valid" / "meta_expressions.json")
    test = read_meta_videos(root / "meta_expressions" / "test" / "meta_expressions.json")
    return {name: entry for name, entry in valid.items() if name not in test}


@pytest.fixture(scope="module")
def ytvos_run(assets):
    """The reference run: shared mode, default options, plus the soft masks."""
    out = assets["root"] / "out_shared"
    assert run_inference(base_args(assets["checkpoint"], assets["text_encoder"], out)
                         + ["--dataset_file", "ytvos", "--ytvos_path", str(assets["ytvos"]), "--save_logits"]) == 0
    return out


def ytvos_args(assets, out, *extra):
    return (base_args(assets["checkpoint"], assets["text_encoder"], out)
            + ["--dataset_file", "ytvos", "--ytvos_path", str(assets["ytvos"]), *extra])


def test_ytvos_layout_and_zip(assets, ytvos_run):
    root = assets["ytvos"]
    videos = valid_videos(root)
    written = read_pngs(ytvos_run / "valid")
    expected = set()
    for name, entry in videos.items():
        for exp_id in entry["expressions"]:
            for frame in entry["frames"]:
                expected.add(f"{name}/{exp_id}/{frame}.png")
                with Image.open(root / "valid" / "JPEGImages" / name / f"{frame}.jpg") as jpeg:
                    size = jpeg.size
                with Image.open(ytvos_run / "valid" / name / exp_id / f"{frame}.png") as png:
                    assert png.mode == "L" and png.size == size
    assert set(written) == expected  # the test videos listed in the valid meta are left out
    assert all(set(np.unique(mask)) <= {0, 255} for mask in written.values())
    with zipfile.ZipFile(ytvos_run / "submission_ytvos_valid.zip") as archive:
        assert sorted(archive.namelist()) == sorted(f"Annotations/{name}" for name in expected)
    assert not (ytvos_run / "valid" / "failures.json").exists()


def test_per_expression_mode_gives_identical_pngs(assets, ytvos_run, tmp_path):
    assert run_inference(ytvos_args(assets, tmp_path, "--per_expression")) == 0
    shared, per_expression = read_pngs(ytvos_run / "valid"), read_pngs(tmp_path / "valid")
    assert shared.keys() == per_expression.keys()
    assert all(np.array_equal(shared[k], per_expression[k]) for k in shared)


def test_batched_decoding_matches_up_to_rounding(assets, ytvos_run, tmp_path):
    """All expressions of a video in one decode call: float rounding differs, masks do not (here)."""
    assert run_inference(ytvos_args(assets, tmp_path, "--save_logits", "--no-zip", "--decode_batch", "0")) == 0
    a, b = read_pngs(ytvos_run / "valid"), read_pngs(tmp_path / "valid")
    differing = sum(int((a[k] != b[k]).sum()) for k in a)
    assert a.keys() == b.keys() and differing <= 1e-4 * sum(m.size for m in a.values())
    single_root, batched_root = ytvos_run / "valid" / "logits", tmp_path / "valid" / "logits"
    files = sorted(single_root.rglob("*.npz"))
    assert len(files) == sum(len(entry["expressions"]) for entry in valid_videos(assets["ytvos"]).values())
    for path in files:
        first, second = load_logits(path), load_logits(batched_root / path.relative_to(single_root))
        assert np.abs(first["mask_probs"].astype(np.float32) - second["mask_probs"].astype(np.float32)).max() < 1e-2
        assert np.array_equal(first["query"], second["query"])


def test_corrupt_frame_is_isolated_and_rerun_completes(assets, ytvos_run, tmp_path):
    data = tmp_path / "ytvos"
    shutil.copytree(assets["ytvos"], data)
    broken_video = sorted(valid_videos(data))[0]
    frame = sorted((data / "valid" / "JPEGImages" / broken_video).glob("*.jpg"))[2]
    original = frame.read_bytes()
    frame.write_bytes(original[: len(original) // 3])
    out = tmp_path / "out"
    args = base_args(assets["checkpoint"], assets["text_encoder"], out) + [
        "--dataset_file", "ytvos", "--ytvos_path", str(data)]
    assert run_inference(args) != 0
    failures = json.loads((out / "valid" / "failures.json").read_text())
    assert [f["video"] for f in failures] == [broken_video] and frame.name in failures[0]["error"]
    reference = read_pngs(ytvos_run / "valid")
    partial = read_pngs(out / "valid")
    assert not any(k.startswith(broken_video) for k in partial)
    assert {k for k in reference if not k.startswith(broken_video)} == set(partial)
    assert all(np.array_equal(reference[k], partial[k]) for k in partial)
    assert not (out / "submission_ytvos_valid.zip").exists()

    frame.write_bytes(original)
    assert run_inference(args) == 0
    resumed = read_pngs(out / "valid")
    assert resumed.keys() == reference.keys() and all(np.array_equal(reference[k], resumed[k]) for k in reference)
    assert not (out / "valid" / "failures.json").exists()
    assert not list((out / "valid").rglob(".*.partial"))
    with zipfile.ZipFile(out / "submission_ytvos_valid.zip") as archive:
        assert len(archive.namelist()) == len(reference)


def test_missing_frame_names_the_file(assets, tmp_path):
    data = tmp_path / "ytvos"
    shutil.copytree(assets["ytvos"], data)
    video = sorted(valid_videos(data))[-1]
    missing = sorted((data / "valid" / "JPEGImages" / video).glob("*.jpg"))[-1]
    missing.unlink()
    out = tmp_path / "out"
    assert run_inference(base_args(assets["checkpoint"], assets["text_encoder"], out)
                         + ["--dataset_file", "ytvos", "--ytvos_path", str(data)]) != 0
    failures = json.loads((out / "valid" / "failures.json").read_text())
    assert [f["video"] for f in failures] == [video] and str(missing) in failures[0]["error"]


def test_mevis_windows_layouts_logits_and_evaluation(assets, tmp_path):
    from rvos.evaluation import evaluate_mevis

    root = make_dataset("mevis", tmp_path / "mevis", seed=0, num_frames=10, min_frames=8, num_valid_u_videos=1,
                        num_valid_videos=1, num_train_videos=1)
    out = tmp_path / "out"
    common = base_args(assets["checkpoint"], assets["text_encoder"], out) + [
        "--dataset_file", "mevis", "--mevis_path", str(root), "--sub_video_len", "6"]
    assert run_inference(common + ["--split", "valid_u"]) == 0
    meta = read_meta_videos(root / "valid_u" / "meta_expressions.json")
    written = read_pngs(out / "valid_u" / "Annotations")
    assert set(written) == {f"{v}/{e}/{f}.png" for v, entry in meta.items() for e in entry["expressions"]
                            for f in entry["frames"]}
    assert not list(out.glob("*.zip"))  # valid_u is scored locally
    results = evaluate_mevis(root / "valid_u" / "meta_expressions.json", root / "valid_u" / "mask_dict.json",
                             out / "valid_u" / "Annotations", workers=1)
    assert 0.0 <= results["J&F"] <= 1.0

    assert run_inference(common + ["--split", "valid", "--no_sampling", "--save_logits"]) == 0
    meta = read_meta_videos(root / "valid" / "meta_expressions.json")
    with zipfile.ZipFile(out / "submission_mevis_valid.zip") as archive:
        assert sorted(archive.namelist()) == sorted(f"{v}/{e}/{f}.png" for v, entry in meta.items()
                                                    for e in entry["expressions"] for f in entry["frames"])
    for video, entry in meta.items():
        with Image.open(root / "valid" / "JPEGImages" / video / f"{entry['frames'][0]}.jpg") as jpeg:
            width, height = jpeg.size
        for exp_id in entry["expressions"]:
            logits = load_logits(out / "valid" / "logits" / video / f"{exp_id}.npz")
            count = len(entry["frames"])
            assert logits["mask_probs"].dtype == np.float16 and logits["mask_probs"].shape[0] == count
            assert logits["frame_scores"].shape == (count,) and list(logits["frames"]) == entry["frames"]
            assert list(logits["orig_size"]) == [height, width]
            # contiguous windows: one query for the whole video
            assert len(set(logits["query"].tolist())) == 1 and logits["query"][0] >= 0
            probs = logits["mask_probs"].astype(np.float32)
            assert probs.min() >= 0.0 and probs.max() <= 1.0


def test_sub_video_windows():
    assert sub_video_windows(65, 30, interleaved=True) == [list(range(i, 65, 3)) for i in range(3)]
    assert sub_video_windows(65, 30, interleaved=False) == [list(range(0, 30)), list(range(30, 60)),
                                                            list(range(60, 65))]
    assert sub_video_windows(60, 30, interleaved=False) == [list(range(0, 30)), list(range(30, 60))]
    assert sub_video_windows(20, 30, interleaved=True) == [list(range(20))]
    assert sub_video_windows(7, 0, interleaved=True) == [list(range(7))]
    for length in range(1, 50):
        count = max(1, length // 6) + (1 if length % 6 and length > 6 else 0)  # the MeViS-2024 formula
        for interleaved in (True, False):
            windows = sub_video_windows(length, 6, interleaved)
            assert len(windows) == count
            assert sorted(p for w in windows for p in w) == list(range(length))
        assert all(len(w) <= 6 for w in sub_video_windows(length, 6, interleaved=False))


def test_balance_is_longest_processing_time_first():
    costs = [10, 1, 7, 3, 3, 2]
    assigned = balance(costs, 2)
    assert sorted(i for rank in assigned for i in rank) == list(range(len(costs)))
    loads = [sum(costs[i] for i in rank) for rank in assigned]
    assert max(loads) - min(loads) <= max(costs)
    assert balance(costs, 1) == [list(range(len(costs)))]


def test_davis_annotator_layout_and_evaluation(assets, tmp_path):
    from rvos.evaluation import evaluate_refdavis

    root = make_dataset("davis", tmp_path / "davis", seed=0, num_frames=6, num_valid_videos=1, num_train_videos=1)
    out = tmp_path / "out"
    assert run_inference(base_args(assets["checkpoint"], assets["text_encoder"], out)
                         + ["--dataset_file", "davis", "--davis_path", str(root), "--davis_clip_len", "4"]) == 0
    meta = read_meta_videos(root / "meta_expressions" / "valid" / "meta_expressions.json")
    for annotator in range(4):
        for video, entry in meta.items():
            pngs = sorted((out / "valid" / f"anno_{annotator}" / video).glob("*.png"))
            assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(len(entry["frames"]))]
            with Image.open(pngs[0]) as image:
                assert image.mode == "P"
                assert np.asarray(image).max() <= len(entry["expressions"]) // 4
    results = evaluate_refdavis(root / "DAVIS", out / "valid")
    assert 0.0 <= results["mean"]["J&F-Mean"] <= 1.0


@pytest.mark.parametrize("name", ["a2d", "jhmdb"])
def test_a2d_jhmdb_predictions_evaluate(assets, tmp_path, name):
    from rvos.evaluation import evaluate_referring_segmentation
    from rvos.evaluation.a2d import GT_FILE_NAMES

    sizes = {"a2d": {"num_train_videos": 1, "num_test_videos": 1}, "jhmdb": {"num_videos": 2}}[name]
    root = make_dataset(name, tmp_path / name, seed=0, num_frames=10, min_frames=8, height=96, width=128, **sizes)
    out = tmp_path / "out"
    assert run_inference(base_args(assets["checkpoint"], assets["text_encoder"], out)
                         + ["--dataset_file", name, f"--{name}_path", str(root), "--num_frames", "3"]) == 0
    predictions = json.loads((out / "test" / "predictions.json").read_text())
    queries = opts.parse_args(["--config", str(TINY_CONFIG)]).num_queries
    gt = json.loads((root / GT_FILE_NAMES[name]).read_text())
    assert len(predictions) == queries * len(gt["images"])
    metrics = evaluate_referring_segmentation(root / GT_FILE_NAMES[name], out / "test" / "predictions.json")
    assert 0.0 <= metrics["mean_iou"] <= 1.0


def test_custom_video_masks_and_overlay(assets, tmp_path):
    root = make_dataset("video", tmp_path / "video", seed=0)
    info = json.loads((root / "synthetic_video.json").read_text())
    sentences = [e["exp"] for e in info["expressions"]]
    out = tmp_path / "out"
    argv = base_args(assets["checkpoint"], assets["text_encoder"], out) + [
        "--video", str(root / info["video"]), "--sub_video_len", "8"]
    for sentence in sentences:
        argv += ["--text", sentence]
    assert run_inference(argv) == 0
    masks = read_pngs(out / "synthetic_video")
    assert set(masks) == {f"{e}/{t:05d}.png" for e in range(len(sentences)) for t in range(info["num_frames"])}
    assert all(m.shape == (info["height"], info["width"]) for m in masks.values())
    overlay = read_video_frames(out / "synthetic_video_overlay.mp4")
    assert len(overlay) == info["num_frames"]


def test_checkpoint_config_rebuilds_architecture_and_legacy_mismatch_is_an_error(assets, tmp_path):
    args = opts.parse_args(["--text_encoder", str(assets["text_encoder"]), "--resume", str(assets["checkpoint"]),
                            "--device", "cpu"])
    model, model_args = build_inference_model(args)  # default flags; the architecture comes from the checkpoint
    assert model_args.hidden_dim == 64 and not model.training

    tiny = opts.parse_args(["--config", str(TINY_CONFIG), "--text_encoder", str(assets["text_encoder"])])
    state = torch.load(assets["checkpoint"], weights_only=True)["model"]
    legacy = tmp_path / "legacy.pth"
    torch.save({"model": state, "args": Namespace(**vars(tiny))}, legacy)
    wrong = opts.parse_args(["--config", str(TINY_CONFIG), "--text_encoder", str(assets["text_encoder"]),
                             "--resume", str(legacy)])
    wrong.with_box_refine = False
    with pytest.raises(CheckpointMismatchError, match="with_box_refine"):
        build_inference_model(wrong)
    right = opts.parse_args(["--config", str(TINY_CONFIG), "--text_encoder", str(assets["text_encoder"]),
                             "--resume", str(legacy)])
    assert vars(build_inference_model(right)[1]) == vars(right)  # the command line's architecture, unchanged


def test_random_weights_need_the_flag(assets):
    args = opts.parse_args(["--config", str(TINY_CONFIG), "--text_encoder", str(assets["text_encoder"])])
    with pytest.raises(ValueError, match="--resume"):
        build_inference_model(args)
    args.allow_random_weights = True
    model, _ = build_inference_model(args)
    assert not model.training


def test_benchmark_tool(assets, tmp_path):
    from rvos.tools.benchmark import main as benchmark

    result = benchmark(["--config", str(TINY_CONFIG), "--text_encoder", str(assets["text_encoder"]), "--device", "cpu",
                        "--msda_impl", "pytorch", "--frames", "2", "--height", "64", "--width", "96",
                        "--expressions", "3", "2", "--num_workers", "1", "--json", str(tmp_path / "bench.json")])
    assert [row["E"] for row in result["rows"]] == [2, 3]
    assert result["backbone_gflops"] > 0 and result["expression_gflops"] > 0
    for row in result["rows"]:
        assert row["masks_identical"] and row["differing_mask_pixels"] == 0
        for clock in ("cpu", "wall"):
            r = row[clock]
            assert 0 < r["s"] < 1
            assert r["ideal_speedup"] == pytest.approx(row["E"] / (r["s"] + row["E"] * (1 - r["s"])))
            assert r["achieved_speedup"] == pytest.approx(r["per_expression_seconds"] / r["shared_seconds"])
    assert json.loads((tmp_path / "bench.json").read_text())["rows"][0]["E"] == 2
