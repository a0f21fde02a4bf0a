"""The TFVOS propagator on the tfvos_tiny fixture (its checkpoint and key-frame video): the adapter runs
``predict.keyframe.propagate`` (corrected path, key mask binarised at 0.5) with the expression, each direction sees
only its own frames, and the errors it owes (no text, TTA, bad spec)."""
import json

import numpy as np
import pytest
from PIL import Image

from rvos.ensemble.propagate import build_propagator, propagate_from_key_frame
from rvos.predict.keyframe import propagate

from conftest import REFERENCE_DIR
from fixture_models import text_encoder_folder

FIXTURE = REFERENCE_DIR / "fixtures" / "tfvos_tiny"
KEYFRAME = FIXTURE / "keyframe_inference"
VIDEO, EXP_ID = "7b96a46cac", "0"


def argv_options(argv):
    """``--flag value`` / ``--switch`` command-line arguments as keyword options."""
    options, position = {}, 0
    while position < len(argv):
        name = argv[position][2:]
        if position + 1 < len(argv) and not argv[position + 1].startswith("--"):
            options[name], position = argv[position + 1], position + 2
        else:
            options[name], position = True, position + 1
    return options


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    meta = json.loads((FIXTURE / "meta.json").read_text())
    options = dict(argv_options(meta["argv"]), backbone_config=json.dumps(meta["backbone_config_override"]),
                   text_encoder=str(text_encoder_folder(FIXTURE, tmp_path_factory.mktemp("text_encoder"))),
                   msda_impl="pytorch")
    options.pop("device")
    return {"type": "tfvos", "checkpoint": str(FIXTURE / "checkpoint.pth"), "device": "cpu", "model_options": options}


@pytest.fixture(scope="module")
def video():
    """(frames uint8 [T, H, W, 3], key index, the original run's initial mask of the key frame, the expression)."""
    names = sorted((KEYFRAME / "data" / "valid" / "JPEGImages" / VIDEO).glob("*.jpg"))
    frames = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in names])
    key = json.loads((KEYFRAME / "c_key_frame_dict.json").read_text())[VIDEO][EXP_ID]
    key_mask = np.asarray(Image.open(KEYFRAME / "initial" / "Annotations" / VIDEO / EXP_ID / f"{names[key].stem}.png"))
    meta = json.loads((KEYFRAME / "data" / "meta_expressions" / "valid" / "meta_expressions.json").read_text())
    return frames, key, key_mask == 255, meta["videos"][VIDEO]["expressions"][EXP_ID]["exp"]


@pytest.fixture(scope="module")
def propagator(spec):
    return build_propagator(spec)


def test_tfvos_propagates_the_binarised_key_mask_with_the_expression(propagator, video):
    frames, key, key_mask, text = video
    soft_key = np.where(key_mask, 0.7, 0.3).astype(np.float32)  # the same mask once binarised at 0.5
    out = propagator.propagate(frames, key, soft_key, text=text)
    assert out.shape == frames.shape[:3] and out.dtype == np.float32
    assert np.array_equal(out[key], soft_key)
    direct = propagate(propagator.predictor().model, list(frames), key, key_mask, text).numpy()
    others = [t for t in range(len(frames)) if t != key]
    np.testing.assert_allclose(out[others], direct[others], atol=1e-4, rtol=1e-4)
    assert all(((out[t] > 0) & (out[t] < 1)).any() for t in others), "every other frame is predicted"


def test_tfvos_directions_see_only_their_own_frames(propagator, video):
    frames, key, key_mask, text = video
    mask = key_mask.astype(np.float32)
    out = propagator.propagate(frames, key, mask, text=text)
    changed = frames.copy()
    changed[key + 1:] = changed[key + 1:, ::-1]
    changed_out = propagator.propagate(changed, key, mask, text=text)
    np.testing.assert_allclose(changed_out[:key + 1], out[:key + 1], atol=1e-4, rtol=1e-4)
    assert np.abs(changed_out[key + 1:] - out[key + 1:]).max() > 1e-3


def test_tfvos_needs_the_text_and_refuses_tta(propagator, video):
    frames, key, key_mask, text = video
    mask = key_mask.astype(np.float32)
    with pytest.raises(ValueError, match="'tfvos' needs the expression"):
        propagator.propagate(frames, key, mask)
    with pytest.raises(ValueError, match="'tfvos' needs the expression"):
        propagate_from_key_frame(propagator, frames, key, mask, np.zeros(frames.shape[:3], np.float32))
    with pytest.raises(ValueError, match="does not support test-time augmentation"):
        propagate_from_key_frame(propagator, frames, key, mask, np.zeros(frames.shape[:3], np.float32),
                                 tta={"scales": [1.0], "flip": True}, text=text)
    source = np.random.default_rng(0).random(frames.shape[:3]).astype(np.float32)
    empty = np.zeros(mask.shape, np.float32)
    assert np.array_equal(propagate_from_key_frame(propagator, frames, key, empty, source, text=text), source)


def test_tfvos_spec_errors(spec, tmp_path):
    with pytest.raises(ValueError, match="checkpoint .*missing.pth does not exist"):
        build_propagator({**spec, "checkpoint": str(tmp_path / "missing.pth")})
    with pytest.raises(ValueError, match="sets model 'mutr'"):
        build_propagator({**spec, "model_options": {"model": "mutr"}})
    with pytest.raises(ValueError, match="'device' in model_options"):
        build_propagator({**spec, "model_options": {"device": "cpu"}})
    with pytest.raises(ValueError, match=r"missing option\(s\) 'checkpoint'"):
        build_propagator({"type": "tfvos"})
