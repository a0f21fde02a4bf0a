"""TFVOS on the synthetic world: 2-process DDP training with main.py (prompt frames in the batches), then key-frame
inference with inference.py from each key-frame source (the model's own whole-video pass, a --save_logits folder,
a JSON file in either format) and each initial-mask source, which all agree pixel for pixel; shared == per-expression
mode; a missing key-frame entry or a key frame outside the video fails that expression only, and the rerun completes
it; a 2-process run equals one process; the MeViS and Ref-DAVIS17 layouts; a SIGTERM finishes the expression in
flight."""
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from rvos.datasets.synthetic import make_dataset
from rvos.predict.keyframe import WholeVideoOutputs
from rvos.predict.writers import BinaryMaskOutput, load_logits
from test_inference_distributed import free_port
from test_inference_preemption import assert_interrupted_then_resumed
from test_inference_fixtures import read_pngs, run_inference, torchrun_env
from train_support import REPO_ROOT, run_checked

HEIGHT, WIDTH = 96, 160
SHORT_SIDE = "64"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("tfvos_world")
    run_checked([sys.executable, "tools/make_tiny_text_encoder.py", "--out", str(base / "text_encoder")])
    sizes = dict(num_frames=6, min_frames=5, height=HEIGHT, width=WIDTH)
    return {"base": base, "text_encoder": base / "text_encoder",
            "ytvos": make_dataset("ytvos", base / "ytvos", seed=4, num_videos=2, num_valid_videos=2,
                                  num_test_videos=1, **sizes)}


@pytest.fixture(scope="module")
def checkpoint(world, tmp_path_factory):
    """A TFVOS checkpoint after 2 iterations of 2-process DDP training (gloo)."""
    out = tmp_path_factory.mktemp("tfvos_train")
    result = run_checked([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "main.py", "--config", "configs/tiny/tfvos_tiny_synthetic.yaml", "--text_encoder",
                          str(world["text_encoder"]), "--ytvos_path", str(world["ytvos"]), "--device", "cpu",
                          "--batch_size", "1", "--num_workers", "0", "--num_frames", "2", "--max_size", str(WIDTH),
                          "--epochs", "1", "--max_iters_per_epoch", "2", "--output_dir", str(out)], timeout=300)
    assert (out / "checkpoint.pth").is_file(), result.stderr[-2000:]
    log = [json.loads(line) for line in (out / "log.txt").read_text().splitlines()]
    assert np.isfinite(log[-1]["train_loss"])
    return out / "checkpoint.pth"


def argv(world, checkpoint, out, *extra, data=None):
    """inference.py options on the synthetic Ref-YouTube-VOS (or on ``data``: the benchmark's options)."""
    data = data or ["--dataset_file", "ytvos", "--ytvos_path", str(world["ytvos"])]
    return ["--resume", str(checkpoint), "--text_encoder", str(world["text_encoder"]), "--device", "cpu",
            "--msda_impl", "pytorch", "--num_workers", "1", "--test_short_side", SHORT_SIDE, "--output_dir", str(out),
            *data, *extra]


def valid_meta(world) -> dict:
    valid = json.loads((world["ytvos"] / "meta_expressions" / "valid" / "meta_expressions.json").read_text())["videos"]
    test = json.loads((world["ytvos"] / "meta_expressions" / "test" / "meta_expressions.json").read_text())["videos"]
    return {video: entry for video, entry in valid.items() if video not in test}


@pytest.fixture(scope="module")
def whole_video(world, checkpoint):
    """A plain (whole-video) run with --save_logits: the logits folder and the masks of the same model."""
    out = world["base"] / "whole"
    assert run_inference(argv(world, checkpoint, out, "--save_logits", "--no-zip")) == 0
    return out / "valid"


@pytest.fixture(scope="module")
def from_model(world, checkpoint):
    """Key-frame inference with key frames and initial masks from the model's own whole-video pass."""
    out = world["base"] / "from_model"
    assert run_inference(argv(world, checkpoint, out, "--key_frames", "model", "--save_logits")) == 0
    return out


def assert_same_pngs(expected: dict, folder):
    ours = read_pngs(folder)
    assert ours.keys() == expected.keys()
    assert [name for name in expected if not np.array_equal(expected[name], ours[name])] == []


def key_frames_of(whole_video, world) -> dict:
    """{video: {exp_id: argmax of the whole-video pass's frame scores}} (the ICCV-2023 rule)."""
    return {video: {exp_id: int(np.argmax(load_logits(whole_video / "logits" / video / f"{exp_id}.npz")["frame_scores"]))
                    for exp_id in entry["expressions"]}
            for video, entry in valid_meta(world).items()}


def test_training_checkpoint_records_the_variant(checkpoint):
    import torch

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert ckpt["config"]["model"] == "tfvos"


def test_from_model_writes_every_frame_zip_and_logits(world, from_model):
    meta = valid_meta(world)
    expected = {f"{video}/{exp_id}/{frame}.png" for video, entry in meta.items() for exp_id in entry["expressions"]
                for frame in entry["frames"]}
    assert set(read_pngs(from_model / "valid")) == expected
    with zipfile.ZipFile(from_model / "submission_ytvos_valid.zip") as archive:
        assert sorted(archive.namelist()) == sorted(f"Annotations/{name}" for name in expected)
    for video, entry in meta.items():
        for exp_id in entry["expressions"]:
            store = load_logits(from_model / "valid" / "logits" / video / f"{exp_id}.npz")
            assert list(store["frames"]) == sorted(entry["frames"]) and np.all(store["query"] >= 0)


def test_key_frames_from_logits_and_json_agree_with_the_model_pass(world, checkpoint, whole_video, from_model,
                                                                   tmp_path):
    expected = read_pngs(from_model / "valid")
    assert run_inference(argv(world, checkpoint, tmp_path / "logits", "--key_frames", str(whole_video / "logits"),
                              "--save_logits")) == 0
    assert_same_pngs(expected, tmp_path / "logits" / "valid")
    keys = key_frames_of(whole_video, world)
    positions = {video: {str(i): keys[video][exp_id] for i, exp_id in enumerate(entry["expressions"])}
                 for video, entry in valid_meta(world).items()}
    (tmp_path / "c_key_frame_dict.json").write_text(json.dumps(positions))
    assert run_inference(argv(world, checkpoint, tmp_path / "json", "--key_frames",
                              str(tmp_path / "c_key_frame_dict.json"), "--save_logits")) == 0
    assert_same_pngs(expected, tmp_path / "json" / "valid")
    iccv = {video: {exp_id: {"index_info": {"class_index": k}} for exp_id, k in entry.items()}
            for video, entry in keys.items()}
    (tmp_path / "key_frame.json").write_text(json.dumps(iccv))
    assert run_inference(argv(world, checkpoint, tmp_path / "iccv", "--key_frames", str(tmp_path / "key_frame.json"),
                              "--key_frame_masks", str(whole_video), "--save_logits")) == 0
    assert_same_pngs(expected, tmp_path / "iccv" / "valid")


def test_shared_mode_equals_per_expression_mode(world, checkpoint, from_model, tmp_path):
    assert run_inference(argv(world, checkpoint, tmp_path, "--key_frames", "model", "--per_expression",
                              "--save_logits")) == 0
    assert_same_pngs(read_pngs(from_model / "valid"), tmp_path / "valid")


@pytest.mark.parametrize("during, mode", [("whole_pass", []), ("propagation", []),
                                          ("propagation", ["--per_expression"])],
                         ids=["whole_pass", "propagation", "propagation_per_expression"])
def test_sigterm_finishes_the_expression_in_flight_and_a_rerun_continues(world, checkpoint, from_model, tmp_path,
                                                                         monkeypatch, during, mode):
    """A real SIGTERM during the whole-video pass or the propagation: the expression in flight is propagated to the
    end and committed alone, exit 124, and the rerun completes with the masks of an uninterrupted run."""
    expected = read_pngs(from_model / "valid")
    units = sorted({"/".join(name.split("/")[:2]) for name in expected})
    output_class = WholeVideoOutputs if during == "whole_pass" else BinaryMaskOutput
    out = tmp_path / "out"
    assert_interrupted_then_resumed(argv(world, checkpoint, out, "--key_frames", "model", *mode), out, out / "valid",
                                    expected, {units[0]}, monkeypatch, output_class=output_class)


def test_bad_key_frames_fail_their_expression_only_and_the_rerun_completes(world, checkpoint, whole_video,
                                                                           from_model, tmp_path):
    keys = key_frames_of(whole_video, world)
    meta = valid_meta(world)
    (first, first_entry), (second, second_entry) = sorted(meta.items())[:2]
    table = {video: {str(i): keys[video][exp_id] for i, exp_id in enumerate(entry["expressions"])}
             for video, entry in meta.items()}
    missing_id = list(first_entry["expressions"])[0]
    del table[first]["0"]
    outside_id = list(second_entry["expressions"])[-1]
    table[second][str(len(second_entry["expressions"]) - 1)] = len(second_entry["frames"])
    key_file = tmp_path / "keys.json"
    key_file.write_text(json.dumps(table))
    out = tmp_path / "out"
    assert run_inference(argv(world, checkpoint, out, "--key_frames", str(key_file), "--save_logits")) != 0
    errors = {(f["video"], f["expression"]): f["error"]
              for f in json.loads((out / "valid" / "failures.json").read_text())}
    assert set(errors) == {(first, missing_id), (second, outside_id)}
    assert "no key frame for expression" in errors[first, missing_id] and str(key_file) in errors[first, missing_id]
    assert "outside the video's" in errors[second, outside_id]
    expected = read_pngs(from_model / "valid")
    written = read_pngs(out / "valid")
    failed_prefixes = (f"{first}/{missing_id}/", f"{second}/{outside_id}/")
    assert set(written) == {name for name in expected if not name.startswith(failed_prefixes)}
    assert all(np.array_equal(expected[name], written[name]) for name in written)
    assert not (out / "valid" / "logits" / first / f"{missing_id}.npz").exists()
    assert not (out / "submission_ytvos_valid.zip").exists()
    key_file.write_text(json.dumps({video: {str(i): keys[video][exp_id] for i, exp_id in enumerate(entry["expressions"])}
                                    for video, entry in meta.items()}))
    assert run_inference(argv(world, checkpoint, out, "--key_frames", str(key_file), "--save_logits")) == 0
    assert_same_pngs(expected, out / "valid")
    assert (out / "submission_ytvos_valid.zip").is_file() and not (out / "valid" / "failures.json").exists()


def test_two_process_torchrun_matches_one_process(world, checkpoint, from_model, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), str(REPO_ROOT / "inference.py"),
               *argv(world, checkpoint, tmp_path, "--key_frames", "model", "--save_logits")]
    result = subprocess.run(command, cwd=REPO_ROOT, env=torchrun_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_pngs(read_pngs(from_model / "valid"), tmp_path / "valid")


@pytest.mark.parametrize("layout", ["mevis", "davis"])
def test_other_benchmark_layouts(world, checkpoint, tmp_path, layout):
    """MeViS (sub-video windows for the whole-video pass) and Ref-DAVIS17 (annotator label maps, initial masks read
    back from a whole-video run's anno_<a> folders) get every frame of every output unit."""
    if layout == "mevis":
        root = make_dataset("mevis", tmp_path / "mevis", seed=1, num_videos=1, num_valid_u_videos=1,
                            num_valid_videos=1, num_frames=4, min_frames=4, height=HEIGHT, width=WIDTH)
        data = ["--dataset_file", "mevis", "--mevis_path", str(root), "--split", "valid_u", "--sub_video_len", "2"]
        meta = json.loads((root / "valid_u" / "meta_expressions.json").read_text())["videos"]
        expected = {f"Annotations/{video}/{exp_id}/{frame}.png" for video, entry in meta.items()
                    for exp_id in entry["expressions"] for frame in entry["frames"]}
        masks = []
    else:
        root = make_dataset("davis", tmp_path / "davis", seed=0, num_frames=4, min_frames=4, num_valid_videos=1,
                            num_train_videos=1, height=HEIGHT, width=WIDTH)
        data = ["--dataset_file", "davis", "--davis_path", str(root), "--davis_clip_len", "2"]
        meta = json.loads((root / "meta_expressions" / "valid" / "meta_expressions.json").read_text())["videos"]
        expected = {f"anno_{a}/{video}/{i:05d}.png" for video, entry in meta.items() for a in range(4)
                    for i in range(len(entry["frames"]))}
        whole = tmp_path / "whole"
        assert run_inference(argv(world, checkpoint, whole, data=data)) == 0
        masks = ["--key_frame_masks", str(whole / "valid")]
    out = tmp_path / "out"
    assert run_inference(argv(world, checkpoint, out, "--key_frames", "model", *masks, data=data)) == 0
    split = "valid_u" if layout == "mevis" else "valid"
    assert set(read_pngs(out / split)) == expected


def test_checkpoint_and_model_combinations(world, checkpoint, whole_video, from_model, tmp_path):
    """TFVOS and ReferFormer checkpoints have the same parameters: --model chooses either. A TFVOS checkpoint run
    as ReferFormer gives the same whole-video masks; key-frame inference of a ReferFormer checkpoint of ours runs
    the TFVOS model (implied); a ReferFormer model is refused for key-frame inference."""
    import torch

    assert run_inference(argv(world, checkpoint, tmp_path / "as_referformer", "--model", "referformer",
                              "--no-zip")) == 0
    assert_same_pngs(read_pngs(whole_video), tmp_path / "as_referformer" / "valid")
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    ckpt["config"]["model"] = "referformer"
    referformer = tmp_path / "referformer.pth"
    torch.save(ckpt, referformer)
    assert run_inference(argv(world, referformer, tmp_path / "implied", "--key_frames", "model")) == 0
    assert_same_pngs(read_pngs(from_model / "valid"), tmp_path / "implied" / "valid")
    with pytest.raises(ValueError, match="--model tfvos"):
        run_inference(argv(world, checkpoint, tmp_path / "refused", "--model", "referformer", "--key_frames", "model"))


def test_keyframe_benchmark_tool(world, tmp_path):
    from rvos.tools.benchmark import main as benchmark

    result = benchmark(["--keyframe", "--config", str(REPO_ROOT / "configs" / "tiny" / "tfvos_tiny_synthetic.yaml"),
                        "--text_encoder", str(world["text_encoder"]), "--device", "cpu", "--msda_impl", "pytorch",
                        "--frames", "5", "--height", "48", "--width", "64", "--expressions", "2", "1",
                        "--num_workers", "1", "--json", str(tmp_path / "bench.json")])
    assert [row["E"] for row in result["rows"]] == [1, 2]
    for row in result["rows"]:
        assert row["masks_identical"] and row["differing_mask_pixels"] == 0
        assert row["keyframe_steps"] == row["E"] * 2  # 5 frames from the middle one, first neighbours skipped
        for clock in ("cpu", "wall"):
            r = row[clock]
            seconds = r["seconds_per_frame_per_expression"]
            assert all(value > 0 for value in seconds.values())
            assert r["shared_speedup"] == pytest.approx(seconds["keyframe_per_expression"] / seconds["keyframe_shared"])
            assert 0 < r["s"] < 1 and r["ideal_shared_speedup"] == pytest.approx(1 / (1 - r["s"] + r["s"] / row["E"]))
            assert r["keyframe_shared_vs_whole_video"] == pytest.approx(seconds["keyframe_shared"]
                                                                        / seconds["whole_video"])
    assert json.loads((tmp_path / "bench.json").read_text())["rows"][1]["E"] == 2
