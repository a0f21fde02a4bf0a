"""Backbone pretraining-file converters and the strict loader, on synthetic files in the official layouts."""
import argparse
import json
import re

import pytest
import torch
import torchvision

from conftest import REFERENCE_DIR
from rvos.models.backbones import build_backbone, filter_resnet, load_backbone_pretrained


def _tiny_joiner(fixture, seed, **arg_changes):
    meta = json.loads((REFERENCE_DIR / "fixtures" / fixture / "meta.json").read_text())
    args = argparse.Namespace(**{**meta["args"], **arg_changes})
    torch.manual_seed(seed)
    return build_backbone(args, meta["backbone_config_override"])


def _randomised(tensor):
    return torch.randn_like(tensor) if tensor.is_floating_point() else tensor.clone()


def _official_swin_imagenet_file(path):
    """{'model': sd} as the Swin-Transformer release: no norm0..3, final norm + head + shift masks."""
    body = _tiny_joiner("mutr_tiny", seed=1)[0].body
    model = {k: _randomised(v) for k, v in body.state_dict().items() if not re.fullmatch(r"norm\d\.(weight|bias)", k)}
    last_dim = body.num_channels[-1]
    model.update({"norm.weight": torch.randn(last_dim), "norm.bias": torch.randn(last_dim),
                  "head.weight": torch.randn(1000, last_dim), "head.bias": torch.randn(1000)})
    for i, stage in enumerate(body.layers):
        for j in range(1, len(stage.blocks), 2):
            model[f"layers.{i}.blocks.{j}.attn_mask"] = torch.zeros(4, 49, 49)
    torch.save({"model": model}, path)
    return model


def _official_video_swin_file(path, edit=None):
    """mmaction layout: 'backbone.' prefix, PatchMerging inside stages, T=2 patch kernel, final norm, cls_head."""
    body = _tiny_joiner("referformer_tiny", seed=1)[0].body
    state = {}
    for key, value in body.state_dict().items():
        state["backbone." + re.sub(r"^downsamples\.(\d+)\.", r"layers.\1.downsample.", key)] = _randomised(value)
    embed_dim, last_dim = body.num_channels[0], body.num_channels[-1]
    state["backbone.patch_embed.proj.weight"] = torch.randn(embed_dim, 3, 2, 4, 4)
    state.update({"backbone.norm.weight": torch.randn(last_dim), "backbone.norm.bias": torch.randn(last_dim),
                  "cls_head.fc_cls.weight": torch.randn(400, last_dim), "cls_head.fc_cls.bias": torch.randn(400)})
    if edit:
        edit(state)
    torch.save({"meta": {"mmcv_version": "1.3.1", "epoch": 30}, "state_dict": state}, path)
    return state


def test_swin_imagenet_file_loads_with_documented_drops(tmp_path):
    path = tmp_path / "swin_imagenet.pth"
    official = _official_swin_imagenet_file(path)
    joiner = _tiny_joiner("mutr_tiny", seed=2)
    report = load_backbone_pretrained(joiner, path)
    body_state = joiner[0].body.state_dict()
    assert report.ok and report.missing == report.unexpected == report.mis_shaped == []
    assert report.allowed_missing == [f"norm{i}.{p}" for i in range(4) for p in ("weight", "bias")]
    official_only = [k for k in official if k.startswith(("head.", "norm.")) or k.endswith("attn_mask")]
    assert sorted(report.dropped) == sorted(official_only)
    assert len(report.loaded) == len(body_state) - 8
    for key in report.loaded:
        assert torch.equal(body_state[key], official[key]), key
    assert torch.equal(body_state["norm0.weight"], torch.ones_like(body_state["norm0.weight"]))


def test_video_swin_kinetics_file_is_converted(tmp_path):
    path = tmp_path / "kinetics.pth"
    official = _official_video_swin_file(path)
    joiner = _tiny_joiner("referformer_tiny", seed=2)
    report = load_backbone_pretrained(joiner, path)
    body_state = joiner[0].body.state_dict()
    assert report.ok and report.allowed_missing == []
    assert sorted(report.dropped) == ["backbone.norm.bias", "backbone.norm.weight", "cls_head.fc_cls.bias",
                                      "cls_head.fc_cls.weight"]
    assert len(report.loaded) == len(body_state)
    summed = official["backbone.patch_embed.proj.weight"].sum(dim=2, keepdim=True)
    assert torch.allclose(body_state["patch_embed.proj.weight"], summed)
    assert torch.equal(body_state["downsamples.1.reduction.weight"],
                       official["backbone.layers.1.downsample.reduction.weight"])
    assert torch.equal(body_state["layers.2.blocks.1.mlp.fc2.bias"],
                       official["backbone.layers.2.blocks.1.mlp.fc2.bias"])


def test_build_backbone_loads_backbone_pretrained(tmp_path):
    path = tmp_path / "kinetics.pth"
    official = _official_video_swin_file(path)
    joiner = _tiny_joiner("referformer_tiny", seed=3, backbone_pretrained=str(path))
    assert torch.equal(joiner[0].body.state_dict()["layers.0.blocks.0.attn.qkv.weight"],
                       official["backbone.layers.0.blocks.0.attn.qkv.weight"])


def test_relative_position_index_may_be_absent(tmp_path):
    path = tmp_path / "no_index.pth"

    def drop_index(state):
        for key in [k for k in state if k.endswith("relative_position_index")]:
            del state[key]

    _official_video_swin_file(path, drop_index)
    joiner = _tiny_joiner("referformer_tiny", seed=2)
    report = load_backbone_pretrained(joiner, path)
    assert report.ok
    index_keys = [k for k in joiner[0].body.state_dict() if k.endswith("attn.relative_position_index")]
    assert index_keys and report.allowed_missing == index_keys


@pytest.mark.parametrize("problem, edit, key", [
    ("mis-shaped",
     lambda s: s.update({"backbone.layers.0.blocks.0.attn.relative_position_bias_table": torch.zeros(2535, 2)}),
     "layers.0.blocks.0.attn.relative_position_bias_table"),
    ("unexpected", lambda s: s.update({"backbone.layers.0.blocks.0.gamma": torch.zeros(12)}),
     "layers.0.blocks.0.gamma"),
    ("missing", lambda s: s.pop("backbone.layers.1.blocks.1.norm1.weight"), "layers.1.blocks.1.norm1.weight"),
])
def test_bad_keys_raise_with_a_table(tmp_path, problem, edit, key):
    path = tmp_path / "edited.pth"
    _official_video_swin_file(path, edit)
    with pytest.raises(ValueError) as error:
        load_backbone_pretrained(_tiny_joiner("referformer_tiny", seed=2), path)
    message = str(error.value)
    assert str(path) in message
    assert re.search(rf"^{problem}\s+{re.escape(key)}\s", message, re.MULTILINE), message


def test_wrong_layout_names_the_expected_entry(tmp_path):
    path = tmp_path / "swin_imagenet.pth"
    _official_swin_imagenet_file(path)
    with pytest.raises(ValueError, match=r"'state_dict'.*swin_\* backbone"):
        load_backbone_pretrained(_tiny_joiner("referformer_tiny", seed=2), path)
    whole_model = tmp_path / "referformer.pth"
    torch.save({"model": {"backbone.0.body.patch_embed.proj.weight": torch.zeros(12, 3, 4, 4)}}, whole_model)
    with pytest.raises(ValueError, match="whole-model"):
        load_backbone_pretrained(_tiny_joiner("mutr_tiny", seed=2), whole_model)


def test_unreadable_files_are_clear_errors(tmp_path):
    joiner = _tiny_joiner("referformer_tiny", seed=2)
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_backbone_pretrained(joiner, tmp_path / "absent.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(ValueError, match="corrupt.pth"):
        load_backbone_pretrained(joiner, corrupt)
    pickled = tmp_path / "pickled.pth"
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=1)}, pickled)
    with pytest.raises(ValueError, match="weights_only=True"):
        load_backbone_pretrained(joiner, pickled)


def test_filter_resnet_drops_classifier_and_batch_counters():
    state = {"conv1.weight": torch.zeros(1), "bn1.num_batches_tracked": torch.tensor(3),
             "fc.weight": torch.zeros(2), "fc.bias": torch.zeros(2), "layer1.0.bn1.running_mean": torch.zeros(1)}
    converted = filter_resnet({"state_dict": state})
    assert sorted(converted.state_dict) == ["conv1.weight", "layer1.0.bn1.running_mean"]
    assert sorted(converted.dropped) == ["bn1.num_batches_tracked", "fc.bias", "fc.weight"]


def test_torchvision_resnet_file_loads(tmp_path):
    path = tmp_path / "resnet50.pth"
    torch.manual_seed(0)
    official = torchvision.models.resnet50(weights=None).state_dict()
    torch.save(official, path)
    joiner = build_backbone(argparse.Namespace(backbone="resnet50", hidden_dim=32, lr_backbone=1e-5))
    report = load_backbone_pretrained(joiner, path)
    assert report.ok and report.allowed_missing == []
    classifier_and_counters = [k for k in official if k.startswith("fc.") or k.endswith("num_batches_tracked")]
    assert sorted(report.dropped) == sorted(classifier_and_counters)
    body_state = joiner[0].body.state_dict()
    assert torch.equal(body_state["layer3.2.conv2.weight"], official["layer3.2.conv2.weight"])
    assert torch.equal(body_state["bn1.running_var"], official["bn1.running_var"])
