"""Every reference case of ../shared/reference/ensemble reproduced by the preset named after its original script:
the same PNG pixels for every file of the reference tree (and no other file), the same key-frame json bytes."""
import json

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT
from rvos.ensemble.recipe import load_recipe
from rvos.ensemble.runner import run_recipe

ROUND1 = "outputs/test/soc_mutr_referft"
ROUND1B = "outputs/test/vit_convnext_soc"
SUBMISSION = "outputs/test/second_ensemble/Annotations_vit_convnext_soc_deaot_vitdeaot_en2_referftdeaot"
FUSION = "Annotations_0_9_6603_649_642"
CASES = {
    "test_swap_1": (f"{ROUND1}/Annotations", f"{ROUND1}/key_frame.json"),
    "test_swap_2": (f"{ROUND1B}/Annotations", f"{ROUND1B}/key_frame.json"),
    "test_ensemble_1": ("outputs/test/second_ensemble/Annotations_en2", None),
    "test_ensemble_2": (SUBMISSION, None),
    "iccv2023_second_round": (SUBMISSION, None),
    "test_fusion_davis": (f"outputs/fusion_davis/{FUSION}", "outputs/fusion_davis/key_frame_0_9_6603_649_642.json"),
    "test_fusion_thr05": (f"outputs/fusion_thr05/{FUSION}", "outputs/fusion_thr05/key_frame_0_9_6603_649_642.json"),
    "referformer_ft_ptf": (None, "outputs/test/referformer_ft/key_frame.json"),
    "mutr_ptf": (None, "outputs/test/mutr/key_frame.json"),
    "vit_ptf": (None, "outputs/test/vit-huge/key_frame.json"),
    "convnext_ptf": (None, "outputs/test/convnext/key_frame.json"),
}


@pytest.mark.parametrize("preset", sorted(CASES))
def test_preset_reproduces_reference(preset, reference_dir, tmp_path):
    ref = reference_dir / "ensemble"
    annotations, key_frames = CASES[preset]
    recipe = load_recipe(REPO_ROOT / "configs" / "ensemble" / f"{preset}.yaml", root=ref, output=tmp_path)
    report = run_recipe(recipe, progress=False)
    assert report.failures == {}
    if annotations is not None:
        expected = sorted(p.relative_to(ref / annotations) for p in (ref / annotations).rglob("*.png"))
        written = sorted(p.relative_to(tmp_path / "Annotations") for p in (tmp_path / "Annotations").rglob("*.png"))
        assert written == expected
        for rel in expected:
            with Image.open(ref / annotations / rel) as a, Image.open(tmp_path / "Annotations" / rel) as b:
                assert b.mode == "L"
                np.testing.assert_array_equal(np.asarray(b), np.asarray(a), err_msg=str(rel))
    if key_frames is not None:
        assert (tmp_path / "key_frames.json").read_text() == (ref / key_frames).read_text()
        assert json.loads((tmp_path / "key_frames.json").read_text()) == json.loads((ref / key_frames).read_text())


def test_chunked_store_in_any_order_matches_whole_store(reference_dir, tmp_path):
    """The I23 split chunks, written here in a video order that crashes the original (reversed, unequal chunks),
    give the same round-1 output as the whole store."""
    import torch

    ref = reference_dir / "ensemble"
    store = torch.load(ref / "inputs/test/model_pth/mutr.pth", weights_only=True)
    videos = list(reversed(list(store)))
    chunks = tmp_path / "mutr_chunks"
    chunks.mkdir()
    for k, part in enumerate((videos[:1], videos[1:4], videos[4:])):
        torch.save({v: store[v] for v in part}, chunks / f"mutr{k}.pth")
    recipe_text = (REPO_ROOT / "configs/ensemble/test_swap_1.yaml").read_text().replace(
        "path: inputs/test/model_pth/mutr.pth", f"path: {chunks}")
    recipe_path = tmp_path / "chunked.yaml"
    recipe_path.write_text(recipe_text)
    run_recipe(load_recipe(recipe_path, root=ref, output=tmp_path / "out"), progress=False)
    annotations = ref / CASES["test_swap_1"][0]
    for png in annotations.rglob("*.png"):
        with Image.open(png) as a, Image.open(tmp_path / "out/Annotations" / png.relative_to(annotations)) as b:
            np.testing.assert_array_equal(np.asarray(b), np.asarray(a))
