"""inference.py's model loading for legacy (public-format) checkpoints: the variant is inferred from the
checkpoint, with that variant's defaults; the other architecture flags come from the command line."""
import json

import pytest
import torch

from rvos import opts
from rvos.predict.model import build_inference_model

from conftest import REFERENCE_DIR
from fixture_models import run_single_video, text_encoder_folder, zero_dropout

FIXTURES = REFERENCE_DIR / "fixtures"


def legacy_argv(fixture, tmp_path, drop=()):
    meta = json.loads((fixture / "meta.json").read_text())
    argv = [a for a in meta["argv"]]
    return argv + ["--backbone_config", json.dumps(meta["backbone_config_override"]),
                   "--text_encoder", str(text_encoder_folder(fixture, tmp_path / "te")), "--msda_impl", "pytorch",
                   "--resume", str(fixture / "checkpoint.pth")]


@pytest.mark.parametrize("family, extra", [("sgmg", []), ("mutr", ["--mutr_ffn_dim", "96"])])
def test_variant_is_inferred_from_a_legacy_checkpoint(tmp_path, family, extra):
    fixture = FIXTURES / f"{family}_tiny"
    argv = legacy_argv(fixture, tmp_path) + extra
    assert "--model" not in argv
    args = opts.parse_args(argv)
    model, model_args = build_inference_model(args, explicit={"backbone_config", "text_encoder"})
    assert model_args.model == family
    assert type(model).__name__.lower() == family


def test_inferred_sgmg_reproduces_the_fixture(tmp_path):
    fixture = FIXTURES / "sgmg_tiny"
    args = opts.parse_args(legacy_argv(fixture, tmp_path))
    model, _ = build_inference_model(args)
    zero_dropout(model)
    out = run_single_video(model, fixture)
    ref = torch.load(fixture / "outputs_single.pt", weights_only=True)
    assert (out["pred_masks"] - ref["pred_masks"]).abs().max() <= 1e-4


def test_explicit_model_wins_and_a_mismatch_is_refused(tmp_path):
    from rvos.models.checkpoint import CheckpointMismatchError
    fixture = FIXTURES / "sgmg_tiny"
    args = opts.parse_args(legacy_argv(fixture, tmp_path) + ["--model", "referformer"])
    with pytest.raises(CheckpointMismatchError, match="sgmg"):
        build_inference_model(args, explicit={"model"})
