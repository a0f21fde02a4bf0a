"""Visual backbones: fidelity to the original code's fixtures and manifests, and behaviour."""
import argparse
import functools
import json
import re

import pytest
import torch

from conftest import (REFERENCE_DIR, REFERFORMER_LAYOUT_FAMILIES, assert_matches_stats, checkpoint_manifests,
                      is_stats_only)
from rvos.models.backbones import (BACKBONE_NAMES, PositionEmbeddingSine1D, backbone_config, build_backbone,
                              resolve_backbone_config)
from rvos.util.misc import NestedTensor, nested_tensor_from_videos_list

ATOL = 1e-4
FIXTURES = ["referformer_tiny", "sgmg_tiny", "mutr_tiny"]
# The ReferFormer-layout manifests (DsHmp's own layout is checked in its own test module).
MANIFESTS = [path.name for path, _ in checkpoint_manifests(REFERFORMER_LAYOUT_FAMILIES)]


@functools.lru_cache(maxsize=None)
def _fixture_backbone(name):
    """The fixture's Joiner, checkpoint ``backbone.*`` weights loaded strictly, eval mode (shared: do not modify)."""
    directory = REFERENCE_DIR / "fixtures" / name
    meta = json.loads((directory / "meta.json").read_text())
    args = argparse.Namespace(**meta["args"])
    joiner = build_backbone(args, meta["backbone_config_override"])
    checkpoint = torch.load(directory / "checkpoint.pth", map_location="cpu", weights_only=False)
    weights = {k[len("backbone."):]: v for k, v in checkpoint["model"].items() if k.startswith("backbone.")}
    joiner.load_state_dict(weights, strict=True)
    return joiner.eval()


def _assert_close(actual, reference):
    if is_stats_only(reference):
        assert_matches_stats(actual, reference, ATOL)
    else:
        assert actual.shape == reference.shape
        assert (actual - reference).abs().max().item() <= ATOL


def _assert_joiner_output(features, pos, ref_features, ref_pos):
    assert len(features) == len(ref_features) == len(pos) == len(ref_pos)
    for level, ref_level in enumerate(ref_features):
        _assert_close(features[level].tensors, ref_level["tensors"])
        assert torch.equal(features[level].mask, ref_level["mask"])
        _assert_close(pos[level], ref_pos[level])


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_batch_features_and_pos(fixture):
    joiner = _fixture_backbone(fixture)
    reference = torch.load(REFERENCE_DIR / "fixtures" / fixture / "backbone.pt", weights_only=True)
    inputs = torch.load(REFERENCE_DIR / "fixtures" / fixture / "inputs.pt", weights_only=True)
    samples = nested_tensor_from_videos_list(inputs["videos"], inputs["size_divisibility"])
    assert torch.equal(samples.mask, reference["input_mask"])
    with torch.no_grad():
        features, pos = joiner(samples)
    assert joiner.strides == reference["strides"]
    assert joiner.num_channels == reference["num_channels"]
    _assert_joiner_output(features, pos, reference["features"], reference["pos"])


@pytest.mark.parametrize("fixture", FIXTURES)
def test_fixture_single_video_features_and_pos(fixture):
    joiner = _fixture_backbone(fixture)
    reference = torch.load(REFERENCE_DIR / "fixtures" / fixture / "backbone.pt", weights_only=True)
    single = torch.load(REFERENCE_DIR / "fixtures" / fixture / "inputs_single.pt", weights_only=True)
    videos = torch.load(REFERENCE_DIR / "fixtures" / fixture / "inputs.pt", weights_only=True)["videos"]
    divisibility = re.search(r"size_divisibility=(\d+)", reference["single_note"])
    assert divisibility, "the fixture note must state how the model padded the single video"
    samples = nested_tensor_from_videos_list([videos[single["video_index"]]], int(divisibility.group(1)))
    with torch.no_grad():
        features, pos = joiner(samples)
    _assert_joiner_output(features, pos, reference["features_single"], reference["pos_single"])


@pytest.mark.parametrize("fixture", FIXTURES)
def test_computed_relative_position_index_equals_checkpoint(fixture):
    """The persistent index buffers we build equal the ones the original saved (so files may omit them)."""
    args, override = _tiny_args(fixture)
    built = build_backbone(args, override).state_dict()
    checkpoint = torch.load(REFERENCE_DIR / "fixtures" / fixture / "checkpoint.pth", weights_only=False)["model"]
    index_keys = [k for k in built if k.endswith("relative_position_index")]
    assert index_keys
    for key in index_keys:
        assert torch.equal(built[key], checkpoint["backbone." + key]), key


@pytest.mark.parametrize("manifest", MANIFESTS)
def test_manifest_backbone_keys_shapes_dtypes(manifest):
    data = json.loads((REFERENCE_DIR / "manifests" / manifest).read_text())
    with torch.device("meta"):
        joiner = build_backbone(argparse.Namespace(**data["config"]))
    ours = {f"backbone.{k}": list(v.shape) for k, v in joiner.state_dict().items()}
    expected = {k: v for k, v in data["keys"].items() if k.startswith("backbone.")}
    assert sorted(set(expected) - set(ours)) == [], "missing keys"
    assert sorted(set(ours) - set(expected)) == [], "unexpected keys"
    assert {k: s for k, s in ours.items() if s != expected[k]} == {}, "shape mismatches"
    dtypes = {f"backbone.{k}": str(v.dtype).replace("torch.", "") for k, v in joiner.state_dict().items()}
    assert {k: d for k, d in dtypes.items() if d != data["dtypes"][k]} == {}
    buffers = {f"backbone.{k}" for k, _ in joiner.named_buffers()}
    assert buffers == {b for b in data["buffers"] if b.startswith("backbone.")}


def test_unknown_backbone_name_lists_valid_ones():
    args = argparse.Namespace(backbone="video_swin_xl_p4w7", hidden_dim=64, lr_backbone=1e-5)
    with pytest.raises(ValueError) as error:
        build_backbone(args)
    for name in BACKBONE_NAMES:
        assert name in str(error.value)
    with pytest.raises(ValueError):
        backbone_config("resnet18")


def test_unknown_config_key_is_an_error():
    with pytest.raises(ValueError, match="windowsize"):
        resolve_backbone_config("swin_t_p4w7", {"windowsize": 12})


def test_config_precedence_and_zoo_copy():
    config = backbone_config("video_swin_b_p4w7")
    config["embed_dim"] = 1
    assert backbone_config("video_swin_b_p4w7")["embed_dim"] == 128
    merged = resolve_backbone_config("video_swin_t_p4w7", {"embed_dim": 24, "depths": [1, 1, 1, 1]}, {"embed_dim": 12})
    assert merged["embed_dim"] == 12 and merged["depths"] == [1, 1, 1, 1]


def test_text_position_embedding_matches_fixture():
    """ReferFormer passes PositionEmbeddingSine1D(hidden_dim).permute(2, 0, 1) as the text ``pos`` of fusion."""
    directory = REFERENCE_DIR / "fixtures" / "referformer_tiny"
    hidden_dim = json.loads((directory / "meta.json").read_text())["args"]["hidden_dim"]
    call = torch.load(directory / "layers.pt", weights_only=True)["fusion_module"][0]["kwargs"]
    mask = call["memory_key_padding_mask"]
    words = call["memory"].permute(1, 0, 2)
    pos = PositionEmbeddingSine1D(hidden_dim, normalize=True)(NestedTensor(words, mask))
    assert pos.shape == (mask.shape[0], hidden_dim, mask.shape[1])
    _assert_close(pos.permute(2, 0, 1), call["pos"])


def _tiny_args(fixture):
    meta = json.loads((REFERENCE_DIR / "fixtures" / fixture / "meta.json").read_text())
    return argparse.Namespace(**meta["args"]), meta["backbone_config_override"]


@pytest.mark.parametrize("num_frames", [1, 2, 5])
def test_video_swin_takes_clip_length_from_input(num_frames):
    """Any T works, outputs are (b t) ordered, and each clip of a batch is processed on its own."""
    args, override = _tiny_args("referformer_tiny")
    torch.manual_seed(0)
    joiner = build_backbone(args, override).eval()
    clips = torch.randn(2, num_frames, 3, 64, 96)
    with torch.no_grad():
        batch_features, batch_pos = joiner(NestedTensor(clips, torch.zeros(2, num_frames, 64, 96, dtype=torch.bool)))
        alone = [joiner(NestedTensor(clips[i:i + 1], None))[0] for i in range(2)]
    for level, stride in enumerate(joiner.strides):
        expected_shape = (2 * num_frames, joiner.num_channels[level], 64 // stride, 96 // stride)
        assert batch_features[level].tensors.shape == expected_shape
        assert batch_pos[level].shape[0] == 2 * num_frames
        stacked = torch.cat([alone[i][level].tensors for i in range(2)])
        assert (batch_features[level].tensors - stacked).abs().max().item() <= 1e-5


def test_swin_2d_processes_frames_independently():
    args, override = _tiny_args("mutr_tiny")
    torch.manual_seed(0)
    joiner = build_backbone(args, override).eval()
    clip = torch.randn(1, 3, 3, 60, 90)
    with torch.no_grad():
        together, _ = joiner(NestedTensor(clip, None))
        per_frame = [joiner(NestedTensor(clip[:, t:t + 1], None))[0] for t in range(3)]
    for level in range(4):
        stacked = torch.cat([per_frame[t][level].tensors for t in range(3)])
        assert (together[level].tensors - stacked).abs().max().item() <= 1e-5


def test_joiner_rejects_bad_input_and_keeps_samples():
    args, override = _tiny_args("referformer_tiny")
    joiner = build_backbone(args, override).eval()
    with pytest.raises(ValueError, match=r"\[B, T, 3, H, W\]"):
        joiner(NestedTensor(torch.zeros(2, 3, 32, 32), torch.zeros(2, 32, 32, dtype=torch.bool)))
    with pytest.raises(ValueError, match="padding mask"):
        joiner(NestedTensor(torch.zeros(1, 2, 3, 32, 32), torch.zeros(1, 32, 32, dtype=torch.bool)))
    samples = NestedTensor(torch.zeros(1, 2, 3, 32, 32), torch.zeros(1, 2, 32, 32, dtype=torch.bool))
    with torch.no_grad():
        joiner(samples)
    assert samples.tensors.shape == (1, 2, 3, 32, 32) and samples.mask.shape == (1, 2, 32, 32)


@pytest.mark.parametrize("fixture", ["referformer_tiny", "mutr_tiny"])
def test_activation_checkpointing_gives_same_gradients(fixture):
    args, override = _tiny_args(fixture)
    clips = torch.randn(1, 3, 3, 64, 64)
    grads = []
    for use_checkpoint in (False, True):
        torch.manual_seed(0)
        joiner = build_backbone(args, {**override, "use_checkpoint": use_checkpoint}).train()
        features, _ = joiner(NestedTensor(clips, None))
        sum(f.tensors.square().mean() for f in features).backward()
        grads.append({k: p.grad.clone() for k, p in joiner.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.allclose(grads[0][k], grads[1][k], atol=1e-6) for k in grads[0])
    assert grads[0]["0.body.layers.0.blocks.0.attn.relative_position_bias_table"].abs().sum() > 0


def test_sgmg_output_levels_drops_last_stage():
    args, override = _tiny_args("sgmg_tiny")
    args.output_levels = 3
    joiner = build_backbone(args, override).eval()
    assert joiner.num_channels == [12, 24, 48] and joiner.strides == [4, 8, 16]
    assert not any(k.startswith(("0.body.layers.3.", "0.body.downsamples.2.")) for k in joiner.state_dict())
    with torch.no_grad():
        features, pos = joiner(NestedTensor(torch.randn(1, 2, 3, 64, 64), None))
    assert len(features) == len(pos) == 3


def test_resnet_freezing_follows_lr_backbone():
    with torch.device("meta"):
        trained = build_backbone(argparse.Namespace(backbone="resnet50", hidden_dim=256, lr_backbone=1e-5))
        frozen = build_backbone(argparse.Namespace(backbone="resnet50", hidden_dim=256, lr_backbone=0.0))
    for name, parameter in trained.named_parameters():
        stage = name.split(".")[2]
        assert parameter.requires_grad == (stage in ("layer2", "layer3", "layer4")), name
    assert not any(p.requires_grad for p in frozen.parameters())


def test_resnet_dilation_keeps_stride_16():
    args = argparse.Namespace(backbone="resnet50", hidden_dim=32, lr_backbone=1e-5, dilation=True)
    joiner = build_backbone(args).eval()
    assert joiner.strides == [4, 8, 16, 16] and joiner.num_channels == [256, 512, 1024, 2048]
    with torch.no_grad():
        features, pos = joiner(NestedTensor(torch.randn(1, 1, 3, 64, 64), None))
    assert [tuple(f.tensors.shape[-2:]) for f in features] == [(16, 16), (8, 8), (4, 4), (4, 4)]
    assert pos[3].shape == (1, 32, 4, 4)
