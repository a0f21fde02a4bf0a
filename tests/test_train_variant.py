"""main.py --resume / --pretrained_weights builds the variant its checkpoint holds (as inference.py does), with that
variant's defaults for the options not given, and refuses a contradicting --model with the table of differences."""
import argparse

import pytest
import torch

from rvos import main as train
from rvos import opts
from rvos.models import build_model
from rvos.models.checkpoint import CheckpointMismatchError
from test_inference_fixtures import REPO_ROOT, TINY_CONFIG, write_text_encoder

SGMG_CONFIG = REPO_ROOT / "configs" / "tiny" / "sgmg_tiny_synthetic.yaml"


@pytest.fixture(scope="module")
def sgmg(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_variant")
    text_encoder = write_text_encoder(root / "text_encoder")
    args = opts.parse_args(["--config", str(SGMG_CONFIG), "--text_encoder", str(text_encoder)])
    torch.manual_seed(0)
    path = root / "sgmg.pth"
    torch.save({"model": build_model(args)[0].state_dict(), "config": opts.args_to_config(args)}, path)
    return {"checkpoint": path, "text_encoder": text_encoder}


def parsed(argv):
    parser = argparse.ArgumentParser(parents=[opts.get_args_parser()])
    return opts.parse_args(argv, parser), opts.option_sources(argv, parser)


def test_pretrained_weights_of_another_variant_build_that_variant(sgmg):
    argv = ["--text_encoder", str(sgmg["text_encoder"]), "--controller_layers", "3", "--pretrained_weights",
            str(sgmg["checkpoint"])]
    args, given = parsed(argv)
    assert args.model is None
    train.adopt_checkpoint_variant(args, sgmg["checkpoint"], given)
    assert args.model == "sgmg"
    own = opts.variant_option_defaults("sgmg")
    assert args.dynamic_mask_channels == own["dynamic_mask_channels"]  # not given: the variant's default
    assert args.controller_layers == 3  # given explicitly, even though it equals the base default


def test_a_contradicting_model_is_refused_with_the_table(sgmg):
    args, given = parsed(["--config", str(TINY_CONFIG), "--text_encoder", str(sgmg["text_encoder"]),
                          "--model", "mutr"])
    assert given["model"] == opts.COMMAND_LINE
    with pytest.raises(CheckpointMismatchError) as caught:
        train.adopt_checkpoint_variant(args, sgmg["checkpoint"], given)
    message = str(caught.value)
    assert f"--model mutr contradicts {sgmg['checkpoint']}, a sgmg checkpoint" in message
    assert "unexpected in checkpoint:" in message and "input_fft" in message  # SgMg's own modules, listed
    assert "pass --model sgmg" in message


def test_main_refuses_a_resume_with_a_contradicting_model(sgmg, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(CheckpointMismatchError, match="--model mutr contradicts"):
        train.main(["--config", str(TINY_CONFIG), "--text_encoder", str(sgmg["text_encoder"]), "--model", "mutr",
                    "--resume", str(sgmg["checkpoint"]), "--output_dir", str(out), "--device", "cpu"])
    assert not (out / "checkpoint.pth").exists()


def test_a_model_from_the_config_file_is_checked_too(sgmg):
    args, given = parsed(["--config", str(TINY_CONFIG), "--text_encoder", str(sgmg["text_encoder"])])
    with pytest.raises(CheckpointMismatchError, match="--model referformer contradicts"):
        train.adopt_checkpoint_variant(args, sgmg["checkpoint"], given)
