"""The propagator interface, the OpenCV optical-flow propagator, the empty-key-mask fallback and TTA averaging.

The synthetic video: a textured 28x28 square moving (3, 2) pixels a frame over a static textured background, so
a mask left in place would be 3 pixels off after one frame; the key frame is in the middle, so both directions run.
"""
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from rvos.ensemble.propagate import PROPAGATOR_TYPES, Propagator, build_propagator, propagate_from_key_frame

from conftest import REPO_ROOT

HEIGHT, WIDTH, FRAMES, SIDE = 96, 128, 9, 28
VELOCITY = (3, 2)  # pixels a frame, (dx, dy)
KEY = 4


def _texture(height, width, seed):
    noise = np.random.default_rng(seed).random((height, width, 3)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 1.5)


@pytest.fixture(scope="module")
def translating_square():
    """(frames uint8 [T, H, W, 3], true masks float32 [T, H, W])."""
    background = _texture(HEIGHT, WIDTH, 1) * 0.5
    square = _texture(SIDE, SIDE, 2) * 0.5 + 0.5
    frames, masks = [], []
    for t in range(FRAMES):
        frame, mask = background.copy(), np.zeros((HEIGHT, WIDTH), np.float32)
        x0, y0 = 50 + VELOCITY[0] * (t - KEY), 34 + VELOCITY[1] * (t - KEY)
        frame[y0:y0 + SIDE, x0:x0 + SIDE] = square
        mask[y0:y0 + SIDE, x0:x0 + SIDE] = 1
        frames.append((frame * 255).astype(np.uint8))
        masks.append(mask)
    return np.stack(frames), np.stack(masks)


def _centroid(mask):
    ys, xs = np.nonzero(mask > 0.5)
    return np.array([xs.mean(), ys.mean()])


def _centroid_errors(out, truth):
    return [float(np.abs(_centroid(out[t]) - _centroid(truth[t])).max()) for t in range(len(truth))]


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_optical_flow_moves_the_mask_with_the_object_both_ways(translating_square, method):
    frames, truth = translating_square
    propagator = build_propagator({"type": "optical_flow", "method": method})
    out = propagator.propagate(frames, KEY, truth[KEY])
    assert out.shape == truth.shape and out.dtype == np.float32
    assert np.array_equal(out[KEY], truth[KEY])
    errors = _centroid_errors(out, truth)
    assert max(errors) <= 1.0, f"centroid error per frame {errors}"
    for t in range(FRAMES):
        overlap = ((out[t] > 0.5) & (truth[t] > 0.5)).sum() / ((out[t] > 0.5) | (truth[t] > 0.5)).sum()
        assert overlap > 0.9, f"frame {t}: IoU {overlap:.3f}"


def test_optical_flow_from_the_first_and_the_last_frame(translating_square):
    frames, truth = translating_square
    propagator = build_propagator({"type": "optical_flow"})
    for key in (0, FRAMES - 1):
        errors = _centroid_errors(propagator.propagate(frames, key, truth[key]), truth)
        assert max(errors) <= 1.0, f"key frame {key}: centroid error per frame {errors}"


def test_empty_key_mask_keeps_the_source(translating_square):
    frames, truth = translating_square
    source = np.random.default_rng(3).random(truth.shape).astype(np.float32)
    key_mask = np.full(truth.shape[1:], 0.5, np.float32)  # nothing above 0.5: empty after binarising
    propagator = build_propagator({"type": "optical_flow"})
    out = propagate_from_key_frame(propagator, frames, KEY, key_mask, source)
    assert np.array_equal(out, source)
    key_mask[40:50, 60:70] = 0.51
    out = propagate_from_key_frame(propagator, frames, KEY, key_mask, source)
    assert np.array_equal(out[KEY], key_mask)
    assert not np.array_equal(out, source)


class LeftHalf(Propagator):
    """Every frame but the key frame: 1 on the left half of the frame it is given, 0 on the right half."""

    name = "left_half"
    supports_tta = True

    def _propagate(self, frames, key_index, key_mask, text):
        out = np.zeros(frames.shape[:3], np.float32)
        out[:, :, :frames.shape[2] // 2] = 1.0
        return out


def test_tta_averages_the_flipped_and_scaled_runs(translating_square):
    frames, truth = translating_square
    source = np.zeros_like(truth)
    plain = propagate_from_key_frame(LeftHalf(), frames, KEY, truth[KEY], source)
    assert np.all(plain[1, :, :WIDTH // 2] == 1) and np.all(plain[1, :, WIDTH // 2:] == 0)
    flipped = propagate_from_key_frame(LeftHalf(), frames, KEY, truth[KEY], source,
                                       tta={"scales": [0.5, 1.0], "flip": True})
    assert flipped.shape == truth.shape and flipped.dtype == np.float32
    assert np.array_equal(flipped[KEY], truth[KEY])
    away_from_middle = np.r_[0:WIDTH // 2 - 2, WIDTH // 2 + 2:WIDTH]
    np.testing.assert_allclose(flipped[1][:, away_from_middle], 0.5, atol=1e-4, rtol=1e-4)
    scaled = propagate_from_key_frame(LeftHalf(), frames, KEY, truth[KEY], source, tta={"scales": [0.5, 1.2]})
    np.testing.assert_allclose(scaled[1][:, away_from_middle], plain[1][:, away_from_middle], atol=1e-4, rtol=1e-4)


def test_tta_optical_flow_stays_on_the_object(translating_square):
    frames, truth = translating_square
    propagator = build_propagator({"type": "optical_flow"})
    out = propagate_from_key_frame(propagator, frames, KEY, truth[KEY], np.zeros_like(truth),
                                   tta={"scales": [0.8, 1.0, 1.2], "flip": True})
    assert out.shape == truth.shape and out.min() >= 0 and out.max() <= 1
    errors = _centroid_errors(out, truth)
    assert max(errors) <= 1.0, f"centroid error per frame {errors}"


class NoTTA(LeftHalf):
    name = "no_tta"
    supports_tta = False


def test_tta_on_a_propagator_without_it_is_an_error(translating_square):
    frames, truth = translating_square
    with pytest.raises(ValueError, match="'no_tta' does not support test-time augmentation"):
        propagate_from_key_frame(NoTTA(), frames, KEY, truth[KEY], truth, tta={"scales": [1.0], "flip": True})
    with pytest.raises(ValueError, match="unknown option.*'flips'.*accepted: scales, flip"):
        propagate_from_key_frame(LeftHalf(), frames, KEY, truth[KEY], truth, tta={"flips": True})
    with pytest.raises(ValueError, match="scales"):
        propagate_from_key_frame(LeftHalf(), frames, KEY, truth[KEY], truth, tta={"scales": [0]})


def test_spec_errors_name_the_bad_entry_and_the_accepted_ones():
    assert "optical_flow" in PROPAGATOR_TYPES
    with pytest.raises(ValueError, match=r"unknown propagator type 'optcal_flow'; accepted: .*optical_flow"):
        build_propagator({"type": "optcal_flow"})
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'mehtod'; accepted: method, dis_preset"):
        build_propagator({"type": "optical_flow", "mehtod": "dis"})
    with pytest.raises(ValueError, match="unknown method 'lk'; accepted: dis, farneback"):
        build_propagator({"type": "optical_flow", "method": "lk"})
    with pytest.raises(ValueError, match="'type'"):
        build_propagator({"method": "dis"})


def test_bad_inputs_are_named(translating_square):
    frames, truth = translating_square
    propagator = build_propagator({"type": "optical_flow"})
    with pytest.raises(ValueError, match="key_index 9 is outside the video's 9 frames"):
        propagator.propagate(frames, FRAMES, truth[0])
    with pytest.raises(ValueError, match=r"key_mask is \(10, 10\)"):
        propagator.propagate(frames, 0, np.zeros((10, 10), np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        propagator.propagate(frames, 0, truth[0] * 3)
    with pytest.raises(ValueError, match="source_probs"):
        propagate_from_key_frame(propagator, frames, 0, truth[0], truth[:3])


def test_sam2_missing_package_names_the_install_command(tmp_path):
    """In a fresh interpreter where ``import sam2`` fails, building the propagator names the pip command."""
    script = textwrap.dedent("""\
        import sys
        sys.modules["sam2"] = None
        from rvos.ensemble.propagate import build_propagator
        try:
            build_propagator({"type": "sam2", "config": "c.yaml", "checkpoint": "c.pt"})
        except ImportError as error:
            print(error)
        """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120, env={"PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr
    assert "pip install" in result.stdout and "sam2==" in result.stdout
