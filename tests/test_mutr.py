"""MUTR and the MeViS-2024 (Tapall) additions reproduce the mutr_tiny fixture (original code's outputs).

The fixture's tiny model shrinks the FFNs the original hard-codes to 2048 (MTA, MTI) to 96
(meta.json config_patches); our option for that width is ``mutr_ffn_dim``.
"""
import contextlib
import json

import pytest
import torch

from rvos.predict.postprocess import ExpressionOutput
from rvos.models import build_model
from rvos.models.checkpoint import (CheckpointMismatchError, checkpoint_config, compare_state_dict, infer_model_name,
                               load_model_checkpoint, read_checkpoint)
from rvos.models.mutr.mti import MTI
from rvos.util.misc import NestedTensor, nested_tensor_from_videos_list

from conftest import REFERENCE_DIR
from fixture_models import assert_train_step, fixture_args, max_abs_diff, zero_dropout

FIXTURE = REFERENCE_DIR / "fixtures" / "mutr_tiny"
REFERFORMER_FIXTURE = REFERENCE_DIR / "fixtures" / "referformer_tiny"
OUTPUT_KEYS = ("pred_logits", "pred_boxes", "pred_masks", "reference_points")
HEAD_KEYS = ("pred_logits", "pred_boxes", "pred_masks")
ATOL = 1e-4


def tiny_ffn_dim() -> int:
    """The FFN width of the fixture's patched MTA/MTI, read from its recorded config patches."""
    patches = json.loads((FIXTURE / "meta.json").read_text())["config_patches"]
    mta_patch = next(p for p in patches if "MTALayer(d_ffn=2048)" in p)
    return int(mta_patch.split("-> d_ffn=")[1].split()[0])


def build_tiny(tmp_path, model_name="mutr", **options):
    args = fixture_args(FIXTURE, tmp_path, ["--model", model_name])
    args.mutr_ffn_dim = tiny_ffn_dim()
    for key, value in options.items():
        setattr(args, key, value)
    torch.manual_seed(123)
    model, criterion, _ = build_model(args)
    return args, model, criterion


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    args, model, criterion = build_tiny(tmp_path_factory.mktemp("mutr_tiny"))
    load_model_checkpoint(model, FIXTURE / "checkpoint.pth", model_config=vars(args))
    zero_dropout(model)
    return model, criterion


@pytest.fixture(scope="module")
def inputs():
    return torch.load(FIXTURE / "inputs.pt", weights_only=True)


@pytest.fixture(scope="module")
def single_video(inputs):
    single = torch.load(FIXTURE / "inputs_single.pt", weights_only=True)
    return inputs["videos"][single["video_index"]], single


@pytest.fixture(scope="module")
def tapall():
    return torch.load(FIXTURE / "tapall_outputs.pt", weights_only=True)


@contextlib.contextmanager
def setting(model, **attributes):
    """Temporarily change options of the shared fixture model."""
    saved = {k: getattr(model, k) for k in attributes}
    for key, value in attributes.items():
        setattr(model, key, value)
    try:
        yield model
    finally:
        for key, value in saved.items():
            setattr(model, key, value)


def batch_samples(inputs):
    samples = nested_tensor_from_videos_list(inputs["videos"], size_divisibility=32)
    assert torch.equal(samples.mask, inputs["samples_mask"])
    return samples


def compare_outputs(ours, ref, atol=ATOL):
    for key in OUTPUT_KEYS:
        if key in ref:
            assert max_abs_diff(ours[key], ref[key]) <= atol, key
    assert len(ours["aux_outputs"]) == len(ref["aux_outputs"])
    for a, b in zip(ours["aux_outputs"], ref["aux_outputs"]):
        for key in HEAD_KEYS:
            assert max_abs_diff(a[key], b[key]) <= atol, f"aux {key}"


def run_eval(model, samples, captions, targets):
    model.eval()
    with torch.no_grad():
        return model(samples, captions, targets)


def test_eval_batch_reproduces_original_code(tiny, inputs):
    """The original mixes the two videos inside MTI in eval too; 'always' reproduces it for any batch."""
    model, _ = tiny
    with setting(model, batch_time_mixing="always"):
        out = run_eval(model, batch_samples(inputs), inputs["captions"], inputs["targets"])
    compare_outputs(out, torch.load(FIXTURE / "outputs.pt", weights_only=True))


def test_eval_single_video(tiny, single_video):
    model, _ = tiny
    video, single = single_video
    out = run_eval(model, [video], single["captions"], single["targets"])
    compare_outputs(out, torch.load(FIXTURE / "outputs_single.pt", weights_only=True))


def test_default_batched_inference_is_per_video(tiny, inputs):
    """By default (mixing in training only) each video of an eval batch gets what it gets alone."""
    model, _ = tiny
    samples = batch_samples(inputs)
    batch = run_eval(model, samples, inputs["captions"], inputs["targets"])
    for i in range(2):
        alone = NestedTensor(samples.tensors[i:i + 1], samples.mask[i:i + 1])
        out = run_eval(model, alone, inputs["captions"][i:i + 1], inputs["targets"][i:i + 1])
        for key in OUTPUT_KEYS + ("frame_queries",):
            assert max_abs_diff(batch[key][i:i + 1], out[key]) <= ATOL, (i, key)


def test_train_losses_matching_and_grads(tiny, inputs):
    model, criterion = tiny
    ref = torch.load(FIXTURE / "loss.pt", weights_only=True)
    model.train()
    targets = inputs["targets_train"]
    model.zero_grad()
    out = model(batch_samples(inputs), [t["caption"] for t in targets], targets)
    compare_outputs(out, ref["outputs_train"])
    assert any(name.startswith("MTA.") for name in ref["grads"]) and any(n.startswith("mti.") for n in ref["grads"])
    assert_train_step(model, criterion, out, targets, ref)
    model.zero_grad()


def test_inference_quirk_and_fixed_inference(tiny, inputs):
    """Boxes do not depend on MTI, so they can be checked against the original's training outputs: by default
    (the published behaviour) eval boxes are those of the FIRST decoder layer; fixed inference gives the last."""
    model, _ = tiny
    train_out = torch.load(FIXTURE / "loss.pt", weights_only=True)["outputs_train"]
    samples = batch_samples(inputs)
    quirk = run_eval(model, samples, inputs["captions"], inputs["targets"])
    assert quirk["aux_outputs"] == []
    assert max_abs_diff(quirk["pred_boxes"], train_out["aux_outputs"][0]["pred_boxes"]) <= ATOL
    with setting(model, fixed_inference=True):
        fixed = run_eval(model, samples, inputs["captions"], inputs["targets"])
    assert len(fixed["aux_outputs"]) == len(train_out["aux_outputs"])
    assert max_abs_diff(fixed["pred_boxes"], train_out["pred_boxes"]) <= ATOL
    assert max_abs_diff(fixed["aux_outputs"][0]["pred_boxes"], train_out["aux_outputs"][0]["pred_boxes"]) <= ATOL
    assert max_abs_diff(fixed["reference_points"], quirk["reference_points"]) == 0


def test_tapall_frame_queries_and_long_term(tiny, inputs, single_video, tapall):
    model, _ = tiny
    video, single = single_video
    out = run_eval(model, [video], single["captions"], single["targets"])
    batch = run_eval(model, batch_samples(inputs), inputs["captions"], inputs["targets"])
    # Tapall's mti_hs_box is [D, T, B, Q, C]; ours is batch-first [B, D, T, Q, C].
    assert max_abs_diff(out["frame_queries"].permute(1, 2, 0, 3, 4), tapall["mti_hs_box_single"]) <= ATOL
    assert max_abs_diff(batch["frame_queries"].permute(1, 2, 0, 3, 4), tapall["mti_hs_box_batch2"]) <= ATOL
    with torch.no_grad():
        one = model.inference_long_term([out["frame_queries"]])
        two = model.inference_long_term([out["frame_queries"], out["frame_queries"]])
    assert max_abs_diff(one[0], tapall["inference_long_term_single"]) <= ATOL
    assert max_abs_diff(two[0], tapall["inference_long_term_two_clips"]) <= ATOL


def test_rescore_video_hook_picks_the_long_term_query(tiny, single_video, tapall):
    model, _ = tiny
    video, single = single_video
    out = run_eval(model, [video], single["captions"], single["targets"])
    size = tuple(int(s) for s in single["targets"][0]["size"])
    window = ExpressionOutput(out["pred_logits"][0], out["pred_masks"][0], size, size, size,
                              extras={"frame_queries": out["frame_queries"][0]})
    expected = tapall["inference_long_term_two_clips"].sigmoid().mean(0).max(-1).values.argmax()
    with torch.no_grad():
        assert model.rescore_video([window, window], 2 * video.shape[0]) == int(expected)


def test_inference_long_term_needs_eval_mode(tiny, single_video):
    model, _ = tiny
    model.train()
    with pytest.raises(RuntimeError, match="eval mode"):
        model.inference_long_term([torch.zeros(1, 2, 3, 3, model.hidden_dim)])
    model.eval()


def test_mti_layers_and_batch_are_independent():
    """Without the legacy mixing, each (layer, video) sequence of frame queries is processed on its own."""
    torch.manual_seed(0)
    mti = MTI(16, window_size=4, num_frame_queries=3, num_queries=3, nheads=4, dim_feedforward=32,
              enc_layers=3, dec_layers=2).eval()
    frames = torch.randn(2, 3, 7, 3, 16)
    with torch.no_grad():
        together = mti(frames)
        alone = mti(frames[1:, 2:])
    assert together.shape == (2, 3, 3, 16)
    assert max_abs_diff(together[1:, 2:], alone) <= 1e-5


def test_checkpoint_of_other_variant_is_refused(tmp_path):
    """A MUTR checkpoint given to --model referformer (same backbone) names exactly the MUTR-only keys; the
    ReferFormer fixture checkpoint given to --model mutr is refused too."""
    mutr_ckpt = read_checkpoint(FIXTURE / "checkpoint.pth")
    mutr_only = {k for k in mutr_ckpt["model"] if k.startswith(("MTA.", "mti."))}
    assert mutr_only
    args, referformer, _ = build_tiny(tmp_path, model_name="referformer")
    with pytest.raises(CheckpointMismatchError) as err:
        load_model_checkpoint(referformer, FIXTURE / "checkpoint.pth", model_config=vars(args))
    message = str(err.value)
    assert f"0 missing, {len(mutr_only)} unexpected, 0 wrongly shaped" in message
    assert "pass --model mutr" in message
    assert "MTA.layers" in message and "mti.enc_self_attn" in message

    args, mutr, _ = build_tiny(tmp_path)
    with pytest.raises(CheckpointMismatchError, match="pass --model referformer"):
        load_model_checkpoint(mutr, REFERFORMER_FIXTURE / "checkpoint.pth", model_config=vars(args))
    missing, _, _ = compare_state_dict(mutr, read_checkpoint(REFERFORMER_FIXTURE / "checkpoint.pth")["model"])
    assert mutr_only <= set(missing)


def test_checkpoint_is_recognised_as_mutr():
    """The legacy MUTR checkpoint is built as --model mutr, from its options or from its keys."""
    ckpt = read_checkpoint(FIXTURE / "checkpoint.pth")
    assert infer_model_name(checkpoint_config(ckpt)) == "mutr"
    assert infer_model_name(None, ckpt["model"]) == "mutr"


@pytest.mark.parametrize("options, message", [
    ({"num_feature_levels": 3}, "num_feature_levels 4"),
    ({"mutr_batch_time_mixing": "sometimes"}, "batch_time_mixing"),
])
def test_invalid_options(tmp_path, options, message):
    with pytest.raises(ValueError, match=message), torch.device("meta"):
        build_tiny(tmp_path, **options)
