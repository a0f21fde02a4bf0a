"""A propagate round in a recipe: the key frame's mask carried by the optical-flow propagator over a synthetic
translating object, the empty-key-mask fallback, and a bad propagator option failing before any work."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from rvos.ensemble.propagate import build_propagator, propagate_from_key_frame
from rvos.ensemble.recipe import load_recipe, RecipeError
from rvos.ensemble.rounds import load_frames
from rvos.ensemble.runner import run_recipe

T, H, W, SIDE, STEP, KEY = 5, 40, 48, 12, 2, 2

RECIPE = """\
meta: meta.json
frames: frames
sources:
  m: {type: pth, path: m.pth}
rounds:
  - name: refined
    op: propagate
    inputs: [m]
    propagator: {type: optical_flow, method: dis}
    key_frame: {rule: argmax, inputs: [m]}
"""


def truth(t: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[14:14 + SIDE, 8 + STEP * t:8 + STEP * t + SIDE] = True
    return mask


@pytest.fixture
def world(tmp_path):
    rng = np.random.default_rng(0)
    background = rng.integers(0, 120, (H, W, 3), dtype=np.uint8)
    texture = rng.integers(130, 255, (SIDE, SIDE, 3), dtype=np.uint8)
    (tmp_path / "frames/vid").mkdir(parents=True)
    for t in range(T):
        frame = background.copy()
        frame[truth(t)] = texture.reshape(-1, 3)
        Image.fromarray(frame).save(tmp_path / f"frames/vid/{t:05d}.jpg", quality=98)
    meta = {"videos": {"vid": {"expressions": {"0": {"exp": "the square"}, "1": {"exp": "nothing"}},
                               "frames": [f"{t:05d}" for t in range(T)]}}}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    logits = np.full((T, H, W), -5.0, dtype=np.float32)
    logits[KEY][truth(KEY)] = 5.0
    scores = [0.1] * T
    scores[KEY] = 0.9
    empty = np.where(rng.random((T, H, W)) > 0.5, 3.0, -3.0).astype(np.float32)
    empty[KEY] = -3.0
    torch.save({"vid": {"0": {"mask_logits": torch.from_numpy(logits), "class_info": scores},
                        "1": {"mask_logits": torch.from_numpy(empty), "class_info": scores}}}, tmp_path / "m.pth")
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    return tmp_path, meta["videos"]["vid"], empty


def read(path):
    with Image.open(path) as image:
        return np.asarray(image) == 255


def test_propagate_round_follows_the_object_and_keeps_empty_key_sources(world):
    root, meta, empty = world
    report = run_recipe(load_recipe(root / "recipe.yaml", output=root / "out"), progress=False)
    assert report.failures == {}
    frames = load_frames(root / "frames", "vid", meta["frames"])
    key_probs = torch.from_numpy(np.where(truth(KEY), 5.0, -5.0).astype(np.float32)).sigmoid().numpy()
    source = np.broadcast_to(torch.full((1,), -5.0).sigmoid().numpy(), (T, H, W)).astype(np.float32).copy()
    source[KEY] = key_probs
    direct = propagate_from_key_frame(build_propagator({"type": "optical_flow", "method": "dis"}), frames, KEY,
                                      key_probs, source) > 0.5
    for t in range(T):
        got = read(root / f"out/Annotations/vid/0/{t:05d}.png")
        np.testing.assert_array_equal(got, direct[t])
        inter, union = np.sum(got & truth(t)), np.sum(got | truth(t))
        assert inter / union > 0.8, (t, inter / union)
        np.testing.assert_array_equal(read(root / f"out/Annotations/vid/1/{t:05d}.png"), empty[t] > 0)
    assert json.loads((root / "out/key_frames.json").read_text())["vid"]["0"]["index_info"]["class_index"] == KEY


def test_bad_propagator_option_fails_before_any_work(world):
    root, _, _ = world
    (root / "bad.yaml").write_text(RECIPE.replace("method: dis}", "method: dis, speed: 3}"))
    with pytest.raises(RecipeError, match=r"bad.yaml:6: round refined: .*speed"):
        run_recipe(load_recipe(root / "bad.yaml", output=root / "out"), progress=False)
    assert not (root / "out/Annotations").exists()
    (root / "typo.yaml").write_text(RECIPE.replace("type: optical_flow", "type: optical_flw"))
    with pytest.raises(RecipeError, match=r"typo.yaml:9: unknown propagator type 'optical_flw'"):
        load_recipe(root / "typo.yaml")
