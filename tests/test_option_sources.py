"""Options change only where the user asked: a value given explicitly (command line or --config) is never replaced
by a variant default or a checkpoint's guess without a word, and a config file cannot hold a key twice."""
import json
import logging

import pytest
import torch
import yaml

from conftest import REFERENCE_DIR
from fixture_models import text_encoder_folder
from rvos import opts
from rvos.inference import build_parser, explicit_options
from rvos.models.checkpoint import CheckpointMismatchError
from rvos.predict.model import build_inference_model, legacy_model_options

FIXTURES = REFERENCE_DIR / "fixtures"


# --------------------------------------------------------------------------- duplicate keys in a config
def test_a_key_written_twice_is_an_error_naming_file_key_and_lines(tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text("lr: 1.0e-4\nepochs: 6\nlr: 2.0e-4\n")
    with pytest.raises(opts.ConfigError, match=rf"config file {config}: key 'lr' is written twice \(lines 1 and 3\)"):
        opts.parse_args(["--config", str(config)])


def test_a_duplicate_in_a_base_file_is_named_and_overriding_a_base_is_not_a_duplicate(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("epochs: 6\nbackbone_config:\n  depths: [1]\n  depths: [2]\n")
    child = tmp_path / "child.yaml"
    child.write_text("_base_: base.yaml\nepochs: 3\n")
    with pytest.raises(opts.ConfigError, match=rf"config file {base}: key 'depths' is written twice \(lines 3 and 4\)"):
        opts.parse_args(["--config", str(child)])
    base.write_text("epochs: 6\nlr: 1.0e-4\n")
    args = opts.parse_args(["--config", str(child)])
    assert (args.epochs, args.lr) == (3, 1e-4)


# --------------------------------------------------------------------------- variant defaults vs explicit values
@pytest.mark.parametrize("model, key, base_value, variant_value", [
    ("sgmg", "controller_layers", 3, 2), ("sgmg", "dynamic_mask_channels", 8, 16), ("mutr", "lr_backbone", 5e-5, 6e-6)])
def test_variant_default_never_replaces_an_explicit_value_equal_to_the_base_default(tmp_path, model, key, base_value,
                                                                                      variant_value):
    assert getattr(opts.parse_args(["--model", model]), key) == variant_value
    assert getattr(opts.parse_args(["--model", model, f"--{key}", str(base_value)]), key) == base_value
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump({"model": model, key: base_value}))
    assert getattr(opts.parse_args(["--config", str(config)]), key) == base_value
    config.write_text(yaml.safe_dump({key: base_value}))
    assert getattr(opts.parse_args(["--config", str(config), "--model", model]), key) == base_value
    config.write_text(f"model: {model}\n")
    assert getattr(opts.parse_args(["--config", str(config)]), key) == variant_value


def test_option_sources_name_the_command_line_and_the_config(tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text("model: sgmg\nlr: 2.0e-4\ndescription: a recipe\n")
    sources = opts.option_sources(["--config", str(config), "--lr", "3e-4", "--binary"], build_parser())
    assert sources == {"model": str(config), "lr": opts.COMMAND_LINE, "binary": opts.COMMAND_LINE}


def test_a_legacy_checkpoint_keeps_explicit_values_equal_to_the_base_default():
    """The variant comes from a legacy checkpoint; its defaults fill only what neither the CLI nor the config set."""
    args = opts.parse_args(["--controller_layers", "3"])
    legacy = {"text_backbone": "Roberta"}  # an SgMg-only option: the checkpoint is SgMg's
    built = legacy_model_options(args, legacy, {}, {"controller_layers": "recipe.yaml"})
    assert (built.model, built.controller_layers, built.dynamic_mask_channels) == ("sgmg", 3, 16)


# --------------------------------------------------------------------------- inference: config vs checkpoint
def _fixture_argv(family, tmp_path):
    meta = json.loads((FIXTURES / f"{family}_tiny" / "meta.json").read_text())
    return list(meta["argv"]) + ["--backbone_config", json.dumps(meta["backbone_config_override"]),
                                 "--text_encoder", str(text_encoder_folder(FIXTURES / f"{family}_tiny", tmp_path / "te")),
                                 "--msda_impl", "pytorch"]


def _build(argv):
    args = opts.parse_args(argv, build_parser())
    return build_inference_model(args, explicit_options(argv))


def test_config_option_contradicting_the_checkpoint_is_warned_like_the_command_line(tmp_path, caplog):
    legacy = torch.load(FIXTURES / "referformer_tiny" / "checkpoint.pth", weights_only=False)
    ours = tmp_path / "ours.pth"
    torch.save({"model": legacy["model"], "config": dict(vars(legacy["args"]), model="referformer")}, ours)
    config = tmp_path / "recipe.yaml"
    config.write_text("controller_layers: 2\n")
    argv = _fixture_argv("referformer", tmp_path) + ["--config", str(config), "--resume", str(ours),
                                                     "--num_queries", "7"]
    with caplog.at_level(logging.WARNING, logger="rvos.predict.model"):
        _, model_args = _build(argv)
    trained = vars(legacy["args"])
    assert (model_args.controller_layers, model_args.num_queries) == (trained["controller_layers"],
                                                                      trained["num_queries"])
    messages = [record.getMessage() for record in caplog.records]
    assert f"'controller_layers' of {config} 2 ignored: the checkpoint was trained with " \
           f"{trained['controller_layers']}" in messages
    assert f"--num_queries 7 ignored: the checkpoint was trained with {trained['num_queries']}" in messages


def test_config_model_is_not_overridden_by_the_legacy_guess(tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text("model: referformer\n")
    argv = _fixture_argv("sgmg", tmp_path) + ["--config", str(config), "--resume",
                                              str(FIXTURES / "sgmg_tiny" / "checkpoint.pth")]
    with pytest.raises(CheckpointMismatchError, match="another model variant: sgmg .this run builds referformer"):
        _build(argv)
    config.write_text("")
    model, model_args = _build(argv)  # without the config's model, the checkpoint's guess builds SgMg
    assert model_args.model == "sgmg" and type(model).__name__ == "SgMg"


def test_a_config_model_the_options_cannot_build_is_named_not_a_raw_value_error(tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text("model: sgmg\n")
    argv = _fixture_argv("referformer", tmp_path) + ["--config", str(config), "--resume",
                                                     str(FIXTURES / "referformer_tiny" / "checkpoint.pth")]
    with pytest.raises(CheckpointMismatchError) as error:
        _build(argv)
    message = str(error.value)
    assert "referformer_tiny/checkpoint.pth: cannot build the sgmg model" in message
    assert f"looks like a referformer model and 'model' of {config} asks for sgmg: pass --model referformer" in message
