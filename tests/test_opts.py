"""The parser: original option names and defaults, YAML configs, overrides and their errors."""
import importlib

import pytest

from rvos import opts
from rvos.inference import build_parser as inference_parser


def test_original_defaults():
    args = opts.parse_args([])
    assert (args.lr, args.lr_backbone, args.lr_drop, args.backbone, args.num_queries) == (1e-4, 5e-5, [6, 8], "resnet50", 5)
    assert args.masks and args.aux_loss and args.rel_coord and not args.with_box_refine
    assert args.text_encoder == "roberta-base"


def test_upstream_command_parses():
    args = opts.parse_args("--with_box_refine --binary --freeze_text_encoder --output_dir out --pretrained_weights "
                           "w.pth --backbone video_swin_b_p4w7 --epochs 6 --lr_drop 3 5 --no_rel_coord".split())
    assert args.with_box_refine and args.binary and args.freeze_text_encoder and not args.rel_coord
    assert args.lr_drop == [3, 5] and args.epochs == 6


@pytest.mark.parametrize("flag", ["--local_rank", "--local-rank"])
def test_legacy_launcher_flags(flag):
    assert opts.parse_args([flag, "3"]).local_rank == 3


def test_config_sets_defaults_and_command_line_wins(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("backbone: swin_t_p4w7\nepochs: 6\nlr_drop: [3, 5]\npaper: {jf: 58.7}\n")
    child = tmp_path / "child.yaml"
    child.write_text("_base_: base.yaml\nepochs: 12\nwith_box_refine: true\n")
    args = opts.parse_args(["--config", str(child), "--epochs", "2"])
    assert (args.backbone, args.epochs, args.lr_drop, args.with_box_refine) == ("swin_t_p4w7", 2, [3, 5], True)
    assert args.recipe == {"paper": {"jf": 58.7}}


@pytest.mark.parametrize("text, message", [
    ("not_an_option: 1\n", "unknown option 'not_an_option'"),
    ("epochs: six\n", "'epochs' needs int"),
    ("lr_drop: 3\n", "'lr_drop' needs a list"),
    ("with_box_refine: 1\n", "needs true/false"),
    ("msda_impl: triton\n", "must be one of"),
    ("- a list\n", "must hold a mapping"),
])
def test_bad_config_is_an_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(opts.ConfigError, match=message) as err:
        opts.parse_args(["--config", str(path)])
    assert "bad.yaml" in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(opts.ConfigError, match="does not exist"):
        opts.parse_args(["--config", str(tmp_path / "absent.yaml")])


def test_shipped_configs_parse():
    """Every run config under configs/ parses; the model zoo index and the ensemble recipes are other formats
    with their own tests (test_zoo.py, test_ensemble_*.py)."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[1] / "configs"
    configs = sorted(path for path in root.rglob("*.yaml")
                     if path.name != "zoo.yaml" and path.relative_to(root).parts[0] != "ensemble")
    assert configs
    for path in configs:
        opts.parse_args(["--config", str(path)])


def test_variant_defaults_apply_unless_given():
    sgmg = opts.parse_args(["--model", "sgmg"])
    assert (sgmg.controller_layers, sgmg.dynamic_mask_channels) == (2, 16)
    mutr = opts.parse_args(["--model", "mutr"])
    assert mutr.lr_backbone == 6e-6
    assert opts.parse_args(["--model", "mutr", "--lr_backbone", "1e-5"]).lr_backbone == 1e-5
    assert opts.parse_args([]).controller_layers == 3


@pytest.mark.parametrize("entry, argv, message", [
    ("main", ["--batch_size", "0"], "--batch_size 0 (set in the command line) is out of range: it must be at least 1"),
    ("main", ["--num_frames", "-1"], "--num_frames -1 (set in the command line)"),
    ("main", ["--num_queries", "0"], "--num_queries 0"),
    ("main", ["--accumulate", "0"], "--accumulate 0"),
    ("main", ["--max_size", "0"], "--max_size 0"),
    ("main", ["--lr_drop", "6", "-2"], "--lr_drop -2"),
    ("inference", ["--threshold", "1.5"], "--threshold 1.5 (set in the command line) is out of range: it must be in "
                                          "[0, 1]"),
    ("inference", ["--test_short_side", "0"], "--test_short_side 0"),
    ("inference", ["--decode_batch", "-1"], "--decode_batch -1"),
])
def test_option_out_of_range_ends_the_cli_with_its_name(entry, argv, message, tmp_path, capsys):
    """Before any work (no output folder, no log): exit status 2 and the option, its value, where it was set and
    its range, as argparse reports a bad option (these used to end in raw tracebacks or run on with nonsense)."""
    module = importlib.import_module(f"rvos.{entry}")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        module.main(argv + ["--output_dir", str(out), "--device", "cpu"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_option_out_of_range_in_a_config_names_the_file(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("num_frames: 0\n")
    with pytest.raises(opts.ConfigError, match=rf"--num_frames 0 \(set in {path}\) is out of range"):
        opts.parse_args(["--config", str(path)])


def test_range_edges_are_accepted():
    args = opts.parse_args(["--threshold", "0", "--decode_batch", "0", "--sub_video_len", "0", "--lr", "0"],
                           inference_parser())
    assert (args.threshold, args.decode_batch, args.sub_video_len, args.lr) == (0.0, 0, 0, 0.0)
    assert opts.parse_args(["--threshold", "1"]).threshold == 1.0
