"""Checkpoint folders (``tools/convert_checkpoint.py``: config.json + model.safetensors): a bit-exact round trip of
every fixture checkpoint, read without unpickling anything, clear errors for damaged folders, and every entry point
(main.py --resume / --pretrained_weights, inference.py --resume, Predictor.from_pretrained) loading a folder as it
loads the .pth."""
import argparse
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from rvos import Predictor, opts
from rvos.datasets.synthetic import make_dataset
from rvos.models import build_model
from rvos.models.checkpoint import (CheckpointError, checkpoint_layout, load_model_checkpoint,
                                    model_name_from_config, model_name_from_keys, read_checkpoint)
from rvos.tools.convert_checkpoint import main as convert_main, same_bits
from conftest import REFERENCE_DIR, skip_unless_variant_exists
from dshmp_fixture import build_tiny
from fixture_models import build_fixture_model, fixture_args
from test_mutr import tiny_ffn_dim
from test_sgmg import SGMG_ARGV
from test_inference_fixtures import (SHORT_SIDE, TINY_CONFIG, base_args, read_pngs, run_inference, write_checkpoint,
                                     write_text_encoder)
from train_support import tiny_args, tiny_world

FIXTURE_CHECKPOINTS = sorted((REFERENCE_DIR / "fixtures").glob("*/checkpoint.pth"))


def convert(source: Path, out: Path) -> Path:
    assert convert_main([str(source), str(out)]) == 0
    return out


def shared_groups(state):
    """Names grouped by the memory they share (tied parameters)."""
    groups = {}
    for name, tensor in state.items():
        if tensor.numel():
            groups.setdefault((tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tensor.shape), []).append(name)
    return sorted(sorted(names) for names in groups.values() if len(names) > 1)


@pytest.mark.parametrize("checkpoint", FIXTURE_CHECKPOINTS, ids=lambda p: p.parent.name)
def test_round_trip_is_bit_exact_and_reads_without_unpickling(checkpoint, tmp_path, monkeypatch):
    out = convert(checkpoint, tmp_path / "converted")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    original = read_checkpoint(checkpoint)

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint folder must be read without unpickling")

    with monkeypatch.context() as patch:
        for target, name in ((torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")):
            patch.setattr(target, name, refuse)
        converted = read_checkpoint(out)
        layout = checkpoint_layout(out)

    assert list(sorted(converted["model"])) == sorted(original["model"])
    for name, tensor in original["model"].items():
        assert same_bits(tensor, converted["model"][name]), name
    assert shared_groups(converted["model"]) == shared_groups(original["model"])
    source = checkpoint_layout(checkpoint)
    assert layout.shapes == source.shapes and layout.dtypes == source.dtypes
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == "rvos-checkpoint" and config["format_version"] == 1
    recorded = vars(original["args"]) if "args" in original else None
    assert config["model_type"] == (model_name_from_config(recorded) or model_name_from_keys(original["model"]))
    if recorded is None:
        assert config["options_source"] is None and "args" not in converted and "config" not in converted
    else:
        assert config["options_source"] == "args" and isinstance(converted["args"], argparse.Namespace)
        assert vars(converted["args"]) == json.loads(json.dumps(recorded))
        assert layout.legacy and layout.config == vars(converted["args"])


@pytest.mark.parametrize("checkpoint", FIXTURE_CHECKPOINTS, ids=lambda p: p.parent.name)
def test_converted_fixture_loads_into_our_model(checkpoint, tmp_path):
    variant = skip_unless_variant_exists(checkpoint.parent.name.split("_")[0])
    fixture = checkpoint.parent
    if variant == "dshmp":  # its own layout and command line (tests/dshmp_fixture.py)
        args, from_pth, _ = build_tiny(tmp_path)
    else:
        extra = {"sgmg": SGMG_ARGV, "mutr": ["--model", "mutr", "--mutr_ffn_dim", str(tiny_ffn_dim())]}.get(variant, [])
        _, from_pth, _, _ = build_fixture_model(fixture, tmp_path, extra)
        args = fixture_args(fixture, tmp_path, extra)
    torch.manual_seed(7)
    from_folder, _, _ = build_model(args)
    load_model_checkpoint(from_folder, convert(checkpoint, tmp_path / "converted"), model_config=vars(args))
    expected, loaded = from_pth.state_dict(), from_folder.state_dict()
    assert expected.keys() == loaded.keys() and all(same_bits(expected[k], loaded[k]) for k in expected)


def test_damaged_folders_are_named(tmp_path):
    text_encoder = write_text_encoder(tmp_path / "text_encoder")
    out = convert(write_checkpoint(tmp_path / "tiny.pth", text_encoder), tmp_path / "folder")
    assert convert_main([str(tmp_path / "tiny.pth"), str(out)]) == 1  # refuses to overwrite without --force
    assert convert_main([str(tmp_path / "tiny.pth"), str(out), "--force"]) == 0
    weights = (out / "model.safetensors").read_bytes()

    (out / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        read_checkpoint(out)
    (out / "model.safetensors").write_bytes(weights)
    config = (out / "config.json").read_text()
    (out / "config.json").write_text(config[:20])
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        read_checkpoint(out)
    (out / "config.json").unlink()
    with pytest.raises(CheckpointError, match="has no config.json"):
        read_checkpoint(out)
    (out / "config.json").write_text(config)
    (out / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        read_checkpoint(out)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nothing_here")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny checkpoint of ours, the same weights as a public-format checkpoint (pickled args), both converted,
    and the synthetic mp4."""
    root = tmp_path_factory.mktemp("folders")
    text_encoder = write_text_encoder(root / "text_encoder")
    ours = write_checkpoint(root / "ours.pth", text_encoder)
    options = opts.parse_args(["--config", str(TINY_CONFIG), "--text_encoder", str(text_encoder)])
    legacy = root / "legacy.pth"
    torch.save({"model": torch.load(ours, weights_only=True)["model"], "args": argparse.Namespace(**vars(options)),
                "epoch": 3}, legacy)
    video_root = make_dataset("video", root / "video", seed=0, num_frames=8, min_frames=8)
    info = json.loads((video_root / "synthetic_video.json").read_text())
    return {"text_encoder": text_encoder, "ours": ours, "legacy": legacy, "options": options,
            "ours_folder": convert(ours, root / "ours"), "legacy_folder": convert(legacy, root / "legacy"),
            "video": video_root / info["video"], "texts": [e["exp"] for e in info["expressions"]]}


def video_pngs(tiny, checkpoint, out, *architecture):
    argv = base_args(checkpoint, tiny["text_encoder"], out) + ["--video", str(tiny["video"]), *architecture,
                                                               "--threshold", "0.75"]
    for text in tiny["texts"]:
        argv += ["--text", text]
    assert run_inference(argv) == 0
    return read_pngs(out / tiny["video"].stem)


def test_inference_loads_a_folder_as_the_pth(tiny, tmp_path):
    for kind, architecture in (("ours", ()), ("legacy", ("--config", str(TINY_CONFIG)))):
        from_pth = video_pngs(tiny, tiny[kind], tmp_path / f"{kind}_pth", *architecture)
        from_folder = video_pngs(tiny, tiny[f"{kind}_folder"], tmp_path / f"{kind}_folder", *architecture)
        assert from_pth.keys() == from_folder.keys() and from_pth
        assert all(np.array_equal(from_pth[k], from_folder[k]) for k in from_pth), kind
        fractions = [float((m > 0).mean()) for m in from_pth.values()]
        assert 0 < np.mean(fractions) < 1  # informative masks at this threshold


def test_predictor_loads_a_folder_as_the_pth(tiny):
    options = dict(device="cpu", text_encoder=str(tiny["text_encoder"]), msda_impl="pytorch",
                   short_side=int(SHORT_SIDE), threshold=0.75)
    reference = Predictor.from_pretrained(tiny["ours"], **options)(tiny["video"], tiny["texts"])
    # the public-format copies carry no config of ours: their architecture is the one their names and shapes fit
    for source in (tiny["ours_folder"], tiny["legacy"], tiny["legacy_folder"]):
        result = Predictor.from_pretrained(source, **options)(tiny["video"], tiny["texts"])
        assert all(np.array_equal(a, b) for a, b in zip(reference.masks, result.masks)), source
        assert all(np.array_equal(a, b) for a, b in zip(reference.scores, result.scores)), source


def test_main_loads_a_folder_for_resume_and_pretrained_weights(tmp_path_factory, tmp_path, tiny):
    from rvos import main as train
    from rvos.util.train_state import ResumeError

    world = tiny_world(tmp_path_factory)
    args = opts.parse_args(tiny_args(world, None, "--eval", "--resume", str(tiny["ours_folder"])))
    resume = train.resolve_resume(args, None)
    assert resume == tiny["ours_folder"]
    models = []
    for path in (tiny["ours"], resume):
        torch.manual_seed(1)
        model, _, _ = build_model(args)
        train.initialise_weights(model, args, Path(path))
        models.append(model.state_dict())
    assert all(same_bits(models[0][k], models[1][k]) for k in models[0])

    out = tmp_path / "finetune"
    assert train.main(tiny_args(world, out, "--pretrained_weights", str(tiny["legacy_folder"]), "--epochs", "1",
                                "--max_iters_per_epoch", "1")) == 0
    trained = read_checkpoint(out / "checkpoint.pth")
    assert trained["epoch"] == 0 and trained["model"].keys() == read_checkpoint(tiny["ours"])["model"].keys()
    with pytest.raises(ResumeError, match="weights-only"):
        train.main(tiny_args(world, tmp_path / "resumed", "--resume", str(tiny["ours_folder"]), "--epochs", "1",
                             "--max_iters_per_epoch", "1"))
