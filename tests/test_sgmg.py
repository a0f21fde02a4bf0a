"""SgMg reproduces the original code's tiny fixture; checkpoints of other variants are refused with a
clear report; the variant of a checkpoint is inferred from its config; the shipped SgMg configs build the
public checkpoints' architecture."""
import json
from pathlib import Path

import pytest
import torch
from transformers import RobertaModel

from rvos import opts
from rvos.models import build_model, load_text_encoder_weights
from rvos.models.checkpoint import (CheckpointMismatchError, checkpoint_config, infer_model_name, load_model_checkpoint,
                               read_checkpoint)
from rvos.models.sgmg.model import SgMg
from rvos.util.misc import nested_tensor_from_videos_list

from conftest import REFERENCE_DIR
from fixture_models import (assert_close, assert_gradients, assert_losses, assert_outputs, assert_record,
                            build_fixture_model, fixture_args, run_recorded, run_single_video)

FIXTURES = REFERENCE_DIR / "fixtures"
MANIFEST_DIR = REFERENCE_DIR / "manifests"
FIXTURE = FIXTURES / "sgmg_tiny"
REFERFORMER_FIXTURE = FIXTURES / "referformer_tiny"
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "sgmg"
# SgMg's own option defaults, which its original argv relies on.
SGMG_ARGV = ["--model", "sgmg", "--controller_layers", "2", "--dynamic_mask_channels", "16"]
OUTPUT_KEYS = ("pred_logits", "pred_boxes", "pred_masks", "reference_points")
HOOKED = ("text_proj", "sentence_proj", "input_fft.0", "input_fft_post.0", "fusion_module", "controller",
          "mask_refine")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_fixture_model(FIXTURE, tmp_path_factory.mktemp("sgmg_tiny"), SGMG_ARGV)


@pytest.fixture(scope="module")
def inputs():
    return torch.load(FIXTURE / "inputs.pt", weights_only=True)


@pytest.fixture(scope="module")
def eval_batch(tiny, inputs):
    """Eval outputs of the padded batch and the forward-hook outputs of the recorded modules."""
    _, model, _, _ = tiny
    samples = nested_tensor_from_videos_list(inputs["videos"], size_divisibility=32)
    assert torch.equal(samples.mask, inputs["samples_mask"])
    out, records = run_recorded(model, HOOKED, samples, inputs["captions"], inputs["targets"])
    return out, {name: [output for _, output in calls] for name, calls in records.items()}


def test_is_sgmg_with_public_key_names(tiny):
    _, model, _, _ = tiny
    assert isinstance(model, SgMg)
    names = set(model.state_dict())
    assert "text_encoder.text_backbone.pooler.dense.weight" in names and "sentence_proj.fc.weight" in names
    assert not any(n.startswith(("pixel_decoder.", "resizer.")) for n in names)


def test_eval_batch_outputs(eval_batch):
    out, _ = eval_batch
    assert_outputs(out, torch.load(FIXTURE / "outputs.pt", weights_only=True), OUTPUT_KEYS)


def test_layer_records(eval_batch):
    _, records = eval_batch
    ref = torch.load(FIXTURE / "layers.pt", weights_only=True)
    for name in HOOKED:
        # the fixture keeps only the controller's first call (decoder layer 0)
        assert len(records[name]) == (len(ref[name]) if name != "controller" else 2), name
        for ours, theirs in zip(records[name], ref[name]):
            assert_record(ours, theirs["output"], name)


def test_eval_single_video_is_padded_to_16(tiny):
    out = run_single_video(tiny[1], FIXTURE)
    ref = torch.load(FIXTURE / "outputs_single.pt", weights_only=True)
    for key in OUTPUT_KEYS:
        assert_close(out[key], ref[key], key)


def test_every_query_mode_agrees_with_best_query(tiny, inputs, eval_batch):
    """A2D / JHMDB / RefCOCO refine every query; the best query's rows equal the best-query outputs."""
    _, model, _, _ = tiny
    best_out, _ = eval_batch
    model.eval()
    model.refine_every_query = True
    try:
        with torch.no_grad():
            out = model(nested_tensor_from_videos_list(inputs["videos"], size_divisibility=32), inputs["captions"],
                        inputs["targets"])
    finally:
        model.refine_every_query = False
    b, t, q = out["pred_logits"].shape[:3]
    assert out["pred_masks"].shape == (b, t, q, 160, 160)
    best = out["pred_logits"].sigmoid().mean(1).max(-1).values.argmax(-1)
    for i in range(b):
        for key in OUTPUT_KEYS:
            assert torch.allclose(out[key][i, :, best[i]], best_out[key][i, :, 0], atol=1e-5), key


def test_train_losses_matching_and_gradients(tiny, inputs):
    _, model, criterion, _ = tiny
    ref = torch.load(FIXTURE / "loss.pt", weights_only=True)
    calls = []
    handle = model.matcher.register_forward_hook(lambda m, a, out: calls.append(out))
    model.train()
    model.zero_grad()
    targets = inputs["targets_train"]
    samples = nested_tensor_from_videos_list(inputs["videos"], size_divisibility=32)
    try:
        out = model(samples, [t["caption"] for t in targets], targets)
        calls_in_model = len(calls)
        losses = criterion(out, targets)
    finally:
        handle.remove()
    assert len(calls) == calls_in_model, "the criterion must reuse the model's matching"
    assert not ref["matcher_calls_in_criterion"]
    expected = ref["matcher_calls_in_model"]
    assert len(calls) == len(expected) == len(criterion.last_indices)
    for ours, used, theirs in zip(calls, criterion.last_indices, expected):
        for (q, t), (uq, ut), (rq, rt) in zip(ours, used, theirs):
            assert torch.equal(q, rq) and torch.equal(t, rt) and torch.equal(uq, rq) and torch.equal(ut, rt)
    assert out["pred_masks"].shape == (2, 3, 160, 160) and out["pred_masks_low"].shape == (2, 3, 80, 80)
    assert torch.allclose(out["pred_masks_low"], ref["outputs_train"]["pred_masks_low"], atol=1e-4, rtol=1e-4)
    assert_record(out["pred_masks"], ref["outputs_train"]["pred_masks"], "pred_masks (train)")

    assert set(losses) == set(criterion.weight_dict) and criterion.weight_dict == ref["weight_dict"]
    assert_losses(losses, criterion, ref).backward()
    assert_gradients(model, ref)
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith("text_encoder."))


def test_training_decode_needs_targets(tiny):
    _, model, _, _ = tiny
    model.train()
    with pytest.raises(ValueError, match="targets"):
        model.decode(None, None, torch.tensor([[144, 150]]))


def _model_for(fixture: Path, tmp_path: Path, extra):
    args = fixture_args(fixture, tmp_path, extra)
    model, _, _ = build_model(args)
    return model, args


def test_referformer_checkpoint_is_refused_by_sgmg(tmp_path):
    model, args = _model_for(FIXTURE, tmp_path, SGMG_ARGV)
    with pytest.raises(CheckpointMismatchError) as err:
        load_model_checkpoint(model, REFERFORMER_FIXTURE / "checkpoint.pth", model_config=vars(args))
    message = str(err.value)
    assert "another model variant: referformer (this run builds sgmg)" in message
    assert "input_fft.*" in message and "pixel_decoder." in message


def test_sgmg_checkpoint_is_refused_by_referformer(tmp_path):
    model, args = _model_for(FIXTURE, tmp_path, ["--model", "referformer"])
    with pytest.raises(CheckpointMismatchError) as err:
        load_model_checkpoint(model, FIXTURE / "checkpoint.pth", model_config=vars(args))
    message = str(err.value)
    assert "another model variant: sgmg (this run builds referformer)" in message
    assert "text_encoder.text_backbone." in message


def test_variant_is_named_from_keys_without_a_config(tmp_path):
    from rvos.models.checkpoint import load_state_dict_strict
    model, args = _model_for(FIXTURE, tmp_path, ["--model", "referformer"])
    state = read_checkpoint(FIXTURE / "checkpoint.pth")["model"]
    with pytest.raises(CheckpointMismatchError, match="another model variant: sgmg"):
        load_state_dict_strict(model, state, "bare.pth")


@pytest.mark.parametrize("fixture, expected", [("referformer_tiny", "referformer"), ("sgmg_tiny", "sgmg"),
                                               ("mutr_tiny", "mutr")])
def test_infer_model_name_from_legacy_checkpoints(fixture, expected):
    ckpt = read_checkpoint(FIXTURES / fixture / "checkpoint.pth")
    assert infer_model_name(checkpoint_config(ckpt)) == expected
    assert infer_model_name(None, ckpt["model"]) == expected


def test_infer_model_name_from_our_config_and_tapall():
    config = opts.args_to_config(opts.parse_args(SGMG_ARGV))
    assert infer_model_name(config) == "sgmg"
    assert infer_model_name(dict(config, model=None)) == "referformer"
    legacy_mutr = json.loads((MANIFEST_DIR / "tapall_swin_l_p4w7.json").read_text())["config"]
    assert "sub_video_len" in legacy_mutr and infer_model_name(legacy_mutr) == "mutr"
    assert infer_model_name(None) == "referformer"


def test_pretrained_roberta_weights_load_into_the_wrapper(tmp_path):
    args = fixture_args(FIXTURE, tmp_path, SGMG_ARGV)
    model, _, _ = build_model(args)
    roberta = RobertaModel(model.text_encoder.config, add_pooling_layer=True)
    torch.save({f"roberta.{k}": v for k, v in roberta.state_dict().items()},
               Path(args.text_encoder) / "pytorch_model.bin")
    load_text_encoder_weights(model)
    for key, value in roberta.state_dict().items():
        assert torch.equal(model.text_encoder.text_backbone.state_dict()[key], value), key


@pytest.mark.parametrize("config", sorted(p for p in CONFIG_DIR.glob("*.yaml") if p.name != "base.yaml"),
                         ids=lambda p: p.stem)
def test_shipped_configs_build_the_public_architecture(config):
    args = opts.parse_args(["--config", str(config)])
    assert args.model == "sgmg"
    args.backbone_pretrained = None  # the architecture only: no weights file is read
    manifest = json.loads((MANIFEST_DIR / f"sgmg_{args.backbone}.json").read_text())
    with torch.device("meta"):
        model, criterion, _ = build_model(args)
    theirs = {k: tuple(v) for k, v in manifest["keys"].items()}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == theirs
    assert criterion.weight_dict == manifest["weight_dict"]
