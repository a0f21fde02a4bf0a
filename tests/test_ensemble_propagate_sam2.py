"""The SAM 2 adapter end to end with a tiny randomly initialised SAM 2 (built from a config written here, no
download): shapes, the frame order of both directions, the empty-key-mask fallback (the error without the package: test_ensemble_propagate.py).

Frame order: the backward pass over k .. 0 must see only frames k .. 0 (and the forward pass only k .. T - 1), and
SAM 2 tracking backward is defined as tracking forward in reversed time (signed temporal encodings), so the
propagation of the reversed video from its key frame T - 1 - k, reversed again, equals the propagation of the video.
"""
import pickle
import textwrap

import numpy as np
import pytest

sam2 = pytest.importorskip("sam2", reason="sam2 is an optional dependency (requirements-extras.txt)")
torch = pytest.importorskip("torch")

from rvos.ensemble.propagate import build_propagator, propagate_from_key_frame  # noqa: E402

FRAMES, HEIGHT, WIDTH, KEY = 6, 48, 64, 2

# SAM 2.1's tiny config scaled down: 64 x 64 input, 32-channel features, five Hiera blocks. Without object-score
# prediction (pred_obj_scores and the options that need it), as random weights would declare the object gone on
# some frames and SAM 2 then blanks them.
TINY_CONFIG = textwrap.dedent("""\
    model:
      _target_: sam2.modeling.sam2_base.SAM2Base
      image_encoder:
        _target_: sam2.modeling.backbones.image_encoder.ImageEncoder
        scalp: 1
        trunk:
          _target_: sam2.modeling.backbones.hieradet.Hiera
          embed_dim: 8
          num_heads: 1
          stages: [1, 1, 2, 1]
          global_att_blocks: [3]
          window_spec: [4, 4, 2, 2]
          window_pos_embed_bkg_spatial_size: [4, 4]
        neck:
          _target_: sam2.modeling.backbones.image_encoder.FpnNeck
          position_encoding:
            _target_: sam2.modeling.position_encoding.PositionEmbeddingSine
            num_pos_feats: 32
            normalize: true
            scale: null
            temperature: 10000
          d_model: 32
          backbone_channel_list: [64, 32, 16, 8]
          fpn_top_down_levels: [2, 3]
          fpn_interp_model: nearest
      memory_attention:
        _target_: sam2.modeling.memory_attention.MemoryAttention
        d_model: 32
        pos_enc_at_input: true
        layer:
          _target_: sam2.modeling.memory_attention.MemoryAttentionLayer
          activation: relu
          dim_feedforward: 64
          dropout: 0.1
          pos_enc_at_attn: false
          self_attention:
            _target_: sam2.modeling.sam.transformer.RoPEAttention
            rope_theta: 10000.0
            feat_sizes: [4, 4]
            embedding_dim: 32
            num_heads: 1
            downsample_rate: 1
            dropout: 0.1
          d_model: 32
          pos_enc_at_cross_attn_keys: true
          pos_enc_at_cross_attn_queries: false
          cross_attention:
            _target_: sam2.modeling.sam.transformer.RoPEAttention
            rope_theta: 10000.0
            feat_sizes: [4, 4]
            rope_k_repeat: true
            embedding_dim: 32
            num_heads: 1
            downsample_rate: 1
            dropout: 0.1
            kv_in_dim: 16
        num_layers: 1
      memory_encoder:
        _target_: sam2.modeling.memory_encoder.MemoryEncoder
        out_dim: 16
        in_dim: 32
        position_encoding:
          _target_: sam2.modeling.position_encoding.PositionEmbeddingSine
          num_pos_feats: 16
          normalize: true
          scale: null
          temperature: 10000
        mask_downsampler:
          _target_: sam2.modeling.memory_encoder.MaskDownSampler
          embed_dim: 32
          kernel_size: 3
          stride: 2
          padding: 1
        fuser:
          _target_: sam2.modeling.memory_encoder.Fuser
          layer:
            _target_: sam2.modeling.memory_encoder.CXBlock
            dim: 32
            kernel_size: 7
            padding: 3
            layer_scale_init_value: 1e-6
            use_dwconv: true
          num_layers: 1
      num_maskmem: 3
      image_size: 64
      sigmoid_scale_for_mem_enc: 20.0
      sigmoid_bias_for_mem_enc: -10.0
      use_mask_input_as_output_without_sam: true
      directly_add_no_mem_embed: true
      no_obj_embed_spatial: false
      use_high_res_features_in_sam: true
      multimask_output_in_sam: true
      iou_prediction_use_sigmoid: true
      use_obj_ptrs_in_encoder: true
      add_tpos_enc_to_obj_ptrs: true
      proj_tpos_enc_in_obj_ptrs: true
      use_signed_tpos_enc_to_obj_ptrs: true
      only_obj_ptrs_in_the_past_for_eval: true
      pred_obj_scores: false
      pred_obj_scores_mlp: false
      fixed_no_obj_ptr: false
      multimask_output_for_tracking: true
      use_multimask_token_for_obj_ptr: true
      multimask_min_pt_num: 0
      multimask_max_pt_num: 1
      use_mlp_for_obj_ptr_proj: true
      compile_image_encoder: false
    """)


@pytest.fixture(scope="module")
def tiny_sam2(tmp_path_factory):
    """A spec of the tiny SAM 2: its config file and a checkpoint of its random initialisation (seed 0)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    folder = tmp_path_factory.mktemp("sam2")
    config = folder / "tiny_sam2.yaml"
    config.write_text(TINY_CONFIG)
    torch.manual_seed(0)
    model = instantiate(OmegaConf.load(config).model, _recursive_=True)
    checkpoint = folder / "tiny_sam2.pt"
    torch.save({"model": model.state_dict()}, checkpoint)
    return {"type": "sam2", "config": str(config), "checkpoint": str(checkpoint), "device": "cpu",
            "fill_hole_area": 0}


@pytest.fixture(scope="module")
def video():
    """(frames uint8 [T, H, W, 3], key mask float32 [H, W]): random frames, a rectangle on the key frame."""
    frames = np.random.default_rng(0).integers(0, 256, (FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8)
    key_mask = np.zeros((HEIGHT, WIDTH), np.float32)
    key_mask[10:30, 20:44] = 0.9
    return frames, key_mask


def test_sam2_propagates_both_ways_at_the_frame_size(tiny_sam2, video):
    frames, key_mask = video
    out = build_propagator(tiny_sam2).propagate(frames, KEY, key_mask)
    assert out.shape == (FRAMES, HEIGHT, WIDTH) and out.dtype == np.float32
    assert np.array_equal(out[KEY], key_mask)
    assert out.min() >= 0 and out.max() <= 1
    for t in set(range(FRAMES)) - {KEY}:
        assert out[t].std() > 0, f"frame {t} was not predicted"


def test_sam2_directions_see_only_their_own_frames(tiny_sam2, video):
    frames, key_mask = video
    propagator = build_propagator(tiny_sam2)
    out = propagator.propagate(frames, KEY, key_mask)
    changed_after = frames.copy()
    changed_after[KEY + 1:] = 255 - changed_after[KEY + 1:]
    out_after = propagator.propagate(changed_after, KEY, key_mask)
    np.testing.assert_allclose(out_after[:KEY], out[:KEY], atol=1e-4, rtol=1e-4)
    assert np.abs(out_after[KEY + 1:] - out[KEY + 1:]).max() > 1e-3
    changed_before = frames.copy()
    changed_before[:KEY] = 255 - changed_before[:KEY]
    out_before = propagator.propagate(changed_before, KEY, key_mask)
    np.testing.assert_allclose(out_before[KEY + 1:], out[KEY + 1:], atol=1e-4, rtol=1e-4)
    assert np.abs(out_before[:KEY] - out[:KEY]).max() > 1e-3


def test_sam2_backward_is_forward_in_reversed_time(tiny_sam2, video):
    frames, key_mask = video
    propagator = build_propagator(tiny_sam2)
    out = propagator.propagate(frames, KEY, key_mask)
    reversed_out = propagator.propagate(frames[::-1].copy(), FRAMES - 1 - KEY, key_mask)[::-1]
    np.testing.assert_allclose(reversed_out, out, atol=1e-4, rtol=1e-4)


def test_sam2_pickles_without_its_model_for_worker_processes(tiny_sam2, video):
    frames, key_mask = video
    propagator = build_propagator(tiny_sam2)
    out = propagator.propagate(frames, KEY, key_mask)
    copy = pickle.loads(pickle.dumps(propagator))
    assert copy._predictor is None
    np.testing.assert_allclose(copy.propagate(frames, KEY, key_mask), out, atol=1e-4, rtol=1e-4)


def test_sam2_with_tta(tiny_sam2, video):
    frames, key_mask = video
    source = np.zeros((FRAMES, HEIGHT, WIDTH), np.float32)
    out = propagate_from_key_frame(build_propagator(tiny_sam2), frames, KEY, key_mask, source,
                                   tta={"scales": [0.75, 1.0], "flip": True})
    assert out.shape == (FRAMES, HEIGHT, WIDTH) and out.dtype == np.float32
    assert np.array_equal(out[KEY], key_mask) and out.min() >= 0 and out.max() <= 1


def test_sam2_empty_key_mask_keeps_the_source(tiny_sam2, video):
    frames, _ = video
    source = np.random.default_rng(1).random((FRAMES, HEIGHT, WIDTH)).astype(np.float32)
    empty = np.full((HEIGHT, WIDTH), 0.4, np.float32)
    out = propagate_from_key_frame(build_propagator(tiny_sam2), frames, KEY, empty, source)
    assert np.array_equal(out, source)


def test_sam2_spec_errors(tiny_sam2, tmp_path):
    with pytest.raises(ValueError, match=r"missing option\(s\) 'config', 'checkpoint'"):
        build_propagator({"type": "sam2"})
    with pytest.raises(ValueError, match="checkpoint .*missing.pt does not exist"):
        build_propagator({**tiny_sam2, "checkpoint": str(tmp_path / "missing.pt")})
    with pytest.raises(ValueError, match="config 'nope.yaml' is neither a file nor a config of the sam2 package"):
        build_propagator({**tiny_sam2, "config": "nope.yaml"})
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": {"image_encoder.unknown": torch.zeros(1)}}, wrong)
    propagator = build_propagator({**tiny_sam2, "checkpoint": str(wrong)})
    with pytest.raises(ValueError, match="does not fit config"):
        propagator.predictor()
