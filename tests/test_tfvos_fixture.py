"""TFVOS reproduces the tfvos_tiny fixture (the original TF_2 model on CPU): eval outputs of the padded batch and of
the key-frame-style single call, both decoder cross-attentions' inputs and outputs, the encoder's two passes, the
train losses, matching and gradients; its parameters are exactly ReferFormer's, so checkpoints load both ways."""
import json

import pytest
import torch

from rvos.datasets.collate import collate_fn
from rvos.models import build_model
from rvos.models.checkpoint import checkpoint_config, infer_model_name, load_model_checkpoint
from rvos.models.tfvos import PROMPT_FRAMES_KEY, PROMPT_MASK_KEY
from rvos.models.tfvos.model import TFVOS
from rvos.models.variants import get_variant
from rvos.util.misc import nested_tensor_from_videos_list

from conftest import REFERENCE_DIR
from fixture_models import (assert_close, assert_outputs, assert_record, assert_train_step, build_fixture_model,
                            fixture_args, max_abs_diff, run_recorded, zero_dropout)

FIXTURE = REFERENCE_DIR / "fixtures" / "tfvos_tiny"
OUTPUT_KEYS = ("pred_logits", "pred_boxes", "pred_masks", "reference_points")
CROSS_ATTENTIONS = ("transformer.decoder.layers.0.cross_attn", "transformer.decoder.layers.1.cross_attn")
HOOKED = CROSS_ATTENTIONS + ("transformer.encoder.layers.0", "fusion_module", "controller")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_fixture_model(FIXTURE, tmp_path_factory.mktemp("tfvos_tiny"), ["--model", "tfvos"])


@pytest.fixture(scope="module")
def inputs():
    return torch.load(FIXTURE / "inputs.pt", weights_only=True)


@pytest.fixture(scope="module")
def eval_batch(tiny, inputs):
    samples = nested_tensor_from_videos_list(inputs["videos"], size_divisibility=32)
    prompts = nested_tensor_from_videos_list(inputs["pre_imgs"], size_divisibility=32)
    assert torch.equal(samples.mask, inputs["samples_mask"]) and torch.equal(prompts.mask, inputs["pre_imgs_mask"])
    return run_recorded(tiny[1], HOOKED, samples, inputs["captions"], inputs["targets"], prompts=prompts)


def single_call_inputs(inputs):
    """The inference_frame_key.py-style call: one frame as a 1-frame clip and its prompt, unpadded lists."""
    single = torch.load(FIXTURE / "inputs_single.pt", weights_only=True)
    frame = inputs["videos"][single["video_index"]][single["frame_index"]][None]
    prompt = inputs["pre_imgs"][single["video_index"]][0:1]
    return [frame], single["captions"], single["targets"], [prompt]


def test_variant_has_referformers_parameters_and_no_own_keys(tiny, tmp_path):
    args, model, _, _ = tiny
    assert isinstance(model, TFVOS)
    assert get_variant("tfvos").key_prefixes == () and get_variant("tfvos").layout() == "referformer"
    meta = json.loads((FIXTURE / "meta.json").read_text())
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == meta["state_dict_keys"]
    referformer_args = fixture_args(FIXTURE, tmp_path, ["--model", "referformer"])
    with torch.device("meta"):
        referformer, _, _ = build_model(referformer_args)
    assert {k: v.shape for k, v in referformer.state_dict().items()} == {k: v.shape for k, v in
                                                                         model.state_dict().items()}


def test_checkpoint_loads_into_referformer_and_keys_cannot_tell(tiny, inputs, tmp_path):
    """A TFVOS checkpoint is a valid ReferFormer checkpoint: strict load, and without prompts the TFVOS model
    computes exactly ReferFormer's outputs. Its legacy Namespace has no TFVOS-only option, so a legacy
    checkpoint's variant is ReferFormer unless --model says otherwise."""
    args = fixture_args(FIXTURE, tmp_path, ["--model", "referformer"])
    torch.manual_seed(0)
    referformer, _, _ = build_model(args)
    ckpt = load_model_checkpoint(referformer, FIXTURE / "checkpoint.pth", model_config=vars(args))
    assert infer_model_name(checkpoint_config(ckpt), ckpt["model"]) == "referformer"
    referformer.eval()
    tfvos = tiny[1].eval()
    samples = nested_tensor_from_videos_list(inputs["videos"], size_divisibility=32)
    with torch.no_grad():
        ours = tfvos(samples, inputs["captions"], inputs["targets"])
        theirs = referformer(samples, inputs["captions"], inputs["targets"])
    for key in OUTPUT_KEYS:
        assert torch.equal(ours[key], theirs[key]), key


def test_eval_batch_outputs(eval_batch):
    out, _ = eval_batch
    assert_outputs(out, torch.load(FIXTURE / "outputs.pt", weights_only=True), OUTPUT_KEYS, aux=True)


def test_both_decoder_cross_attentions_and_encoder_passes(eval_batch):
    """Each decoder layer's cross_attn is called twice (prompt memory, then frame memory) with the same reference
    points; the encoder runs on the prompt levels first; early fusion: 4 frame levels, then 4 prompt levels."""
    _, records = eval_batch
    ref = torch.load(FIXTURE / "layers.pt", weights_only=True)
    for name in CROSS_ATTENTIONS + ("transformer.encoder.layers.0",):
        assert len(records[name]) == len(ref[name]) == 2, name
        for (args, output), theirs in zip(records[name], ref[name]):
            assert_record(list(args), theirs["args"], f"{name} args")
            assert_record(output, theirs["output"][0] if isinstance(theirs["output"], (list, tuple))
                          else theirs["output"], f"{name} output")
    for name in CROSS_ATTENTIONS:
        prompt_call, frame_call = records[name]
        assert torch.equal(prompt_call[0][1], frame_call[0][1]), "both cross-attentions use the same reference points"
    fusion = ref["fusion_module"]
    assert len(records["fusion_module"]) == len(fusion) == 8
    for (_, output), theirs in zip(records["fusion_module"], fusion):
        assert_record(output, theirs["output"], "fusion_module")
    assert_record(records["controller"][0][1], ref["controller"][0]["output"], "controller")


def test_single_call_outputs_and_cross_attention_records(tiny, inputs):
    out, records = run_recorded(tiny[1], CROSS_ATTENTIONS + ("backbone",), *single_call_inputs(inputs)[:3],
                                prompts=single_call_inputs(inputs)[3])
    ref = torch.load(FIXTURE / "outputs_single.pt", weights_only=True)
    for key in OUTPUT_KEYS:
        assert_close(out[key], ref[key], key)
    backbone = torch.load(FIXTURE / "backbone.pt", weights_only=True)
    (_, (frame_features, _)), (_, (prompt_features, _)) = records["backbone"]
    for ours, theirs in ((frame_features, backbone["features_single"]), (prompt_features,
                                                                         backbone["features_pre_single"])):
        for level, expected in zip(ours, theirs):
            assert_close(level.tensors, expected["tensors"], "backbone features", tol=1e-5)
            assert torch.equal(level.mask, expected["mask"])
    for layer, name in enumerate(CROSS_ATTENTIONS):
        expected = backbone[f"msdeform_decoder_layer{layer}"]
        assert len(records[name]) == len(expected) == 2
        for call, ((args, output), theirs) in enumerate(zip(records[name], expected)):
            recorded = list(theirs["args"])
            if isinstance(recorded[2], str):  # "identical to msdeform_decoder_layer0[call]['args'][2]"
                recorded[2] = backbone["msdeform_decoder_layer0"][call]["args"][2]
            for i, (ours, theirs_arg) in enumerate(zip(args, recorded)):
                assert_close(ours, theirs_arg, f"{name} call {call} arg {i}", tol=1e-5)
            assert_close(output, theirs["output"][0], f"{name} call {call} output", tol=1e-5)


def test_prompt_valid_ratio_quirk_and_its_correction(tiny, inputs, tmp_path):
    """Video 1's prompts are smaller than its frames, so their valid ratios differ: the corrected path changes
    the batch outputs (the fixture has the quirk), but not the unpadded single call."""
    args = fixture_args(FIXTURE, tmp_path, ["--model", "tfvos", "--tfvos_own_prompt_valid_ratios"])
    torch.manual_seed(0)
    corrected, _, _ = build_model(args)
    load_model_checkpoint(corrected, FIXTURE / "checkpoint.pth", model_config=vars(args))
    corrected.eval()
    samples = nested_tensor_from_videos_list(inputs["videos"], size_divisibility=32)
    prompts = nested_tensor_from_videos_list(inputs["pre_imgs"], size_divisibility=32)
    with torch.no_grad():
        batch = corrected(samples, inputs["captions"], inputs["targets"], prompts=prompts)
        single = corrected(*single_call_inputs(inputs)[:3], prompts=single_call_inputs(inputs)[3])
    ref = torch.load(FIXTURE / "outputs.pt", weights_only=True)
    assert max_abs_diff(batch["pred_logits"][1], ref["pred_logits"][1]) > 1e-3
    assert_close(batch["pred_logits"][0], ref["pred_logits"][0], "video 0 (same valid ratios)")
    assert_close(single["pred_masks"], torch.load(FIXTURE / "outputs_single.pt", weights_only=True)["pred_masks"],
                 "single call")


def test_train_losses_matching_and_gradients(tiny, inputs):
    """The training batch goes through our collate function (prompts padded on their own to a multiple of 32, as
    TF2's collate_fn) and the model reads them from the targets, as main.py trains."""
    _, model, criterion, _ = tiny
    ref = torch.load(FIXTURE / "loss.pt", weights_only=True)
    batch = [(video, dict(target, **{PROMPT_FRAMES_KEY: prompt}))
             for video, target, prompt in zip(inputs["videos"], inputs["targets_train"], inputs["pre_imgs"])]
    samples, targets = collate_fn(batch)
    assert torch.equal(samples.mask, inputs["samples_mask"])
    assert torch.equal(torch.stack([t[PROMPT_MASK_KEY] for t in targets]), inputs["pre_imgs_mask"])
    model.train()
    zero_dropout(model)
    model.zero_grad()
    out = model(samples, [t["caption"] for t in targets], targets)
    assert_train_step(model, criterion, out, targets, ref)
    model.zero_grad()
    model.eval()

