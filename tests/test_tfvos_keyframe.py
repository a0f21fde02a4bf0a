"""TFVOS key-frame inference reproduces the original inference_frame_key.py run of tfvos_tiny/keyframe_inference
(same checkpoint, data, key frames and initial masks): every PNG pixel for pixel, with inference.py and with
``propagate``; the initial masks made by the model's own whole-video pass are the reference's too."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from rvos.predict.keyframe import KeyFrameError, propagate, propagation_frames

from conftest import REFERENCE_DIR
from fixture_models import build_fixture_model, text_encoder_folder
from test_inference_fixtures import read_pngs, run_inference

FIXTURE = REFERENCE_DIR / "fixtures" / "tfvos_tiny"
KEYFRAME = FIXTURE / "keyframe_inference"


def original_args(tmp_path, *extra):
    """inference.py with the fixture's architecture flags (a legacy checkpoint: they come from the command line)."""
    meta = json.loads((FIXTURE / "meta.json").read_text())
    return meta["argv"] + [
        "--backbone_config", json.dumps(meta["backbone_config_override"]),
        "--text_encoder", str(text_encoder_folder(FIXTURE, tmp_path / "text_encoder")), "--msda_impl", "pytorch",
        "--resume", str(FIXTURE / "checkpoint.pth"), "--dataset_file", "ytvos", "--ytvos_path", str(KEYFRAME / "data"),
        "--output_dir", str(tmp_path / "out"), "--num_workers", "1", "--key_frames",
        str(KEYFRAME / "c_key_frame_dict.json"), *extra]


def assert_reference_pngs(folder):
    reference, ours = read_pngs(KEYFRAME / "Annotations"), read_pngs(folder)
    assert len(reference) == 48 and ours.keys() == reference.keys()
    differing = [name for name in reference if not np.array_equal(reference[name], ours[name])]
    assert not differing, differing


def test_original_compatible_mode_writes_the_original_pngs(tmp_path):
    """Initial masks from the original run's Annotations/ tree, shared-backbone mode (the default)."""
    assert run_inference(original_args(tmp_path, "--key_frame_masks", str(KEYFRAME / "initial" / "Annotations"))) == 0
    assert_reference_pngs(tmp_path / "out" / "valid")
    assert (tmp_path / "out" / "submission_ytvos_valid.zip").is_file()


def test_own_whole_video_pass_gives_the_reference_initial_masks(tmp_path):
    """The reference's initial masks came from the same weights run as ReferFormer: our whole-video pass (the
    prompt branch off) makes them, so the run from it writes the original PNGs too."""
    assert run_inference(original_args(tmp_path, "--key_frame_masks", "model")) == 0
    assert_reference_pngs(tmp_path / "out" / "valid")


def fixture_video(video: str, exp_id: str):
    frames_dir = KEYFRAME / "data" / "valid" / "JPEGImages" / video
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(frames_dir.glob("*.jpg"))]
    names = [p.stem for p in sorted(frames_dir.glob("*.jpg"))]
    initial = np.stack([np.asarray(Image.open(KEYFRAME / "initial" / "Annotations" / video / exp_id / f"{n}.png")) == 255
                        for n in names])
    reference = np.stack([np.asarray(Image.open(KEYFRAME / "Annotations" / video / exp_id / f"{n}.png")) == 255
                          for n in names])
    meta = json.loads((KEYFRAME / "data" / "meta_expressions" / "valid" / "meta_expressions.json").read_text())
    text = meta["videos"][video]["expressions"][exp_id]["exp"]
    return frames, initial, reference, text


def test_propagate_api_reproduces_one_expression(tmp_path):
    _, model, _, _ = build_fixture_model(FIXTURE, tmp_path, ["--model", "tfvos"])
    model.eval()
    key = json.loads((KEYFRAME / "c_key_frame_dict.json").read_text())["7b96a46cac"]["0"]
    frames, initial, reference, text = fixture_video("7b96a46cac", "0")
    probabilities = propagate(model, frames, key, initial[key], text, skip_first_neighbour=True,
                              initial_masks=initial)
    assert probabilities.shape == (len(frames), *initial.shape[1:])
    assert np.array_equal((probabilities > 0.5).numpy(), reference)
    fixed = propagate(model, frames[key - 1:key + 2], 1, initial[key], text)  # the key frame and its neighbours
    for neighbour in (0, 2):
        soft = fixed[neighbour]
        assert ((soft > 0) & (soft < 1)).any(), "the neighbours are predicted in the corrected path"
    assert torch.equal(fixed[1], torch.from_numpy(initial[key]).float())
    with pytest.raises(ValueError, match="initial_masks"):
        propagate(model, frames, key, initial[key], text, skip_first_neighbour=True)


def test_propagation_order_and_the_skipped_neighbour():
    assert propagation_frames(8, 3, skip_first_neighbour=True) == ([5, 6, 7], [1, 0])
    assert propagation_frames(8, 3, skip_first_neighbour=False) == ([4, 5, 6, 7], [2, 1, 0])
    assert propagation_frames(8, 0, skip_first_neighbour=True) == ([2, 3, 4, 5, 6, 7], [])
    assert propagation_frames(8, 7, skip_first_neighbour=True) == ([], [5, 4, 3, 2, 1, 0])
    assert propagation_frames(8, 6, skip_first_neighbour=True) == ([], [4, 3, 2, 1, 0])
    assert propagation_frames(1, 0, skip_first_neighbour=False) == ([], [])
    for key in (-1, 8):
        with pytest.raises(KeyFrameError, match="outside the video's 8 frames"):
            propagation_frames(8, key, skip_first_neighbour=True)
