"""The ReferFormer tiny fixture (original code's outputs and losses) is reproduced by our model."""
import pytest
import torch

from rvos.util.misc import nested_tensor_from_videos_list

from conftest import REFERENCE_DIR
from fixture_models import assert_train_step, build_fixture_model, max_abs_diff, run_single_video

FIXTURE = REFERENCE_DIR / "fixtures" / "referformer_tiny"
OUTPUT_KEYS = ("pred_logits", "pred_boxes", "pred_masks", "reference_points")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_fixture_model(FIXTURE, tmp_path_factory.mktemp("referformer_tiny"))


@pytest.fixture(scope="module")
def inputs():
    return torch.load(FIXTURE / "inputs.pt", weights_only=True)


def _compare_outputs(ours: dict, ref: dict, atol: float):
    for key in OUTPUT_KEYS:
        assert max_abs_diff(ours[key], ref[key]) <= atol, key
    assert len(ours["aux_outputs"]) == len(ref["aux_outputs"])
    for a, b in zip(ours["aux_outputs"], ref["aux_outputs"]):
        for key in ("pred_logits", "pred_boxes", "pred_masks"):
            assert max_abs_diff(a[key], b[key]) <= atol, f"aux {key}"


def test_tokenizer_matches_fixture(tiny, inputs):
    _, model, _, _ = tiny
    ids = model.tokenizer(inputs["captions"], padding="longest", return_tensors="pt")
    assert torch.equal(ids["input_ids"], inputs["tokenized"]["input_ids"])
    assert torch.equal(ids["attention_mask"], inputs["tokenized"]["attention_mask"])


def test_eval_batch_outputs(tiny, inputs):
    _, model, _, _ = tiny
    model.eval()
    samples = nested_tensor_from_videos_list(inputs["videos"], size_divisibility=32)
    assert torch.equal(samples.mask, inputs["samples_mask"])
    with torch.no_grad():
        out = model(samples, inputs["captions"], inputs["targets"])
    _compare_outputs(out, torch.load(FIXTURE / "outputs.pt", weights_only=True), atol=1e-4)


def test_eval_single_video_outputs(tiny):
    out = run_single_video(tiny[1], FIXTURE)
    _compare_outputs(out, torch.load(FIXTURE / "outputs_single.pt", weights_only=True), atol=1e-4)


def test_train_losses_and_matching(tiny, inputs):
    _, model, criterion, _ = tiny
    ref = torch.load(FIXTURE / "loss.pt", weights_only=True)
    model.train()
    samples = nested_tensor_from_videos_list(inputs["videos"], size_divisibility=32)
    targets = inputs["targets_train"]
    model.zero_grad()
    out = model(samples, [t["caption"] for t in targets], targets)
    assert_train_step(model, criterion, out, targets, ref)
