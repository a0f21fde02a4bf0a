"""Checkpoint reading and strict loading: public format, bad files, architecture mismatches."""
import argparse
import json
import shutil

import pytest
import torch

from rvos.models import build_model
from rvos.models.checkpoint import (CheckpointError, CheckpointMismatchError, atomic_save, checkpoint_config,
                               load_model_checkpoint, load_pretrained_weights, read_checkpoint)
from rvos.models.text_encoder import TextEncoderNotFound, TextEncoderSource

from conftest import REFERENCE_DIR
from fixture_models import fixture_args, text_encoder_folder

FIXTURE = REFERENCE_DIR / "fixtures" / "referformer_tiny"


def test_public_checkpoint_reads_with_weights_only():
    ckpt = read_checkpoint(FIXTURE / "checkpoint.pth")
    assert set(ckpt) >= {"model", "optimizer", "lr_scheduler", "epoch", "args"}
    assert isinstance(ckpt["args"], argparse.Namespace)
    assert checkpoint_config(ckpt)["backbone"] == "video_swin_t_p4w7"


def test_other_globals_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "payload": shutil.rmtree}, path)
    with pytest.raises(CheckpointError, match="evil.pth"):
        read_checkpoint(path)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_checkpoint_names_the_file(tmp_path, damage):
    path = tmp_path / "damaged.pth"
    data = (FIXTURE / "checkpoint.pth").read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint" * 100, "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="damaged.pth"):
        read_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pth")


def test_not_a_model_checkpoint(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="not a model checkpoint"):
        read_checkpoint(path)


@pytest.mark.parametrize("change, expected", [
    ([], "with_box_refine"),
    (["--with_box_refine", "--num_queries", "5"], "num_queries"),
])
def test_architecture_mismatch_is_reported_with_a_table(tmp_path, change, expected):
    meta = json.loads((FIXTURE / "meta.json").read_text())
    argv = [a for a in meta["argv"] if a != "--with_box_refine"]
    argv += ["--backbone_config", json.dumps(meta["backbone_config_override"]),
             "--text_encoder", str(text_encoder_folder(FIXTURE, tmp_path / "te"))] + change
    from rvos import opts
    args = opts.parse_args(argv)
    model, _, _ = build_model(args)
    with pytest.raises(CheckpointMismatchError) as err:
        load_model_checkpoint(model, FIXTURE / "checkpoint.pth", model_config=vars(args))
    message = str(err.value)
    assert expected in message
    assert "checkpoint.pth" in message


def test_wrong_backbone_is_reported(tmp_path):
    args = fixture_args(FIXTURE, tmp_path, extra=["--backbone", "resnet50"])
    args.backbone_config = None
    model, _, _ = build_model(args)
    with pytest.raises(CheckpointMismatchError, match="backbone"):
        load_model_checkpoint(model, FIXTURE / "checkpoint.pth", model_config=vars(args))


def test_pretrained_weights_keep_fresh_class_heads(tmp_path):
    args = fixture_args(FIXTURE, tmp_path)
    torch.manual_seed(0)
    model, _, _ = build_model(args)
    fresh = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("class_embed.")}
    left = load_pretrained_weights(model, FIXTURE / "checkpoint.pth")
    assert sorted(left) == sorted(fresh)
    reference = read_checkpoint(FIXTURE / "checkpoint.pth")["model"]
    state = model.state_dict()
    for key, value in fresh.items():
        assert torch.equal(state[key], value)
    for key in ("query_embed.weight", "transformer.level_embed", "backbone.0.body.patch_embed.proj.weight"):
        assert torch.equal(state[key], reference[key])


def test_legacy_position_ids_key_is_accepted(tmp_path):
    args = fixture_args(FIXTURE, tmp_path)
    model, _, _ = build_model(args)
    ckpt = read_checkpoint(FIXTURE / "checkpoint.pth")
    ckpt["model"]["text_encoder.embeddings.position_ids"] = torch.arange(40)[None]
    legacy = tmp_path / "legacy.pth"
    torch.save(ckpt, legacy)
    load_model_checkpoint(model, legacy)


def test_atomic_save_replaces_whole_file(tmp_path):
    path = tmp_path / "ckpt.pth"
    atomic_save({"model": {"w": torch.zeros(3)}}, path)
    atomic_save({"model": {"w": torch.ones(3)}}, path)
    assert torch.equal(read_checkpoint(path)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]


@pytest.mark.parametrize("remove, message", [
    (["vocab.json", "merges.txt", "tokenizer.json"], "no tokenizer files"),
    (["config.json"], "no config.json"),
])
def test_text_encoder_folder_with_missing_files(tmp_path, remove, message):
    folder = text_encoder_folder(FIXTURE, tmp_path / "te")
    for name in remove:
        (folder / name).unlink(missing_ok=True)
    source = TextEncoderSource(str(folder))
    with pytest.raises(TextEncoderNotFound, match=message) as err:
        source.tokenizer() if "tokenizer" in message else source.config()
    assert str(folder) in str(err.value) and "--text_encoder" in str(err.value)


def test_text_encoder_weights_missing_says_where(tmp_path):
    folder = text_encoder_folder(FIXTURE, tmp_path / "te")
    with pytest.raises(TextEncoderNotFound, match="model.safetensors"):
        TextEncoderSource(str(folder)).weights_file()


def test_missing_text_encoder_folder(tmp_path):
    with pytest.raises(TextEncoderNotFound, match="does not exist"):
        TextEncoderSource(str(tmp_path / "absent" / "roberta"))


def test_hub_name_builds_offline_from_carried_config():
    config = TextEncoderSource("roberta-base").config()
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (768, 12, 50265)


def test_pretrained_weights_can_keep_the_class_heads(tmp_path):
    args = fixture_args(FIXTURE, tmp_path)
    model, _, _ = build_model(args)
    left = load_pretrained_weights(model, FIXTURE / "checkpoint.pth", keep_class_head=True)
    assert left == []
    reference = read_checkpoint(FIXTURE / "checkpoint.pth")["model"]
    assert torch.equal(model.state_dict()["class_embed.0.weight"], reference["class_embed.0.weight"])
