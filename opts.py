"""The one command-line parser: ReferFormer's options (same names, defaults and meaning), the
variants' additions, and ``--config FILE``.

A YAML config sets defaults (it may inherit with ``_base_: other.yaml``); the command line
overrides it; an unknown key, or a value of the wrong type, is an error.
"""
import argparse
import copy
import os
from pathlib import Path
from typing import Any, Collection, Dict, List, Optional

import yaml

from rvos.models.variants import MODEL_NAMES, all_variants

# Keys a config file may carry that describe the recipe rather than set an option.
RECIPE_KEYS = ("description", "paper", "notes")
# Where an option was set (``option_sources``) when not in the config file.
COMMAND_LINE = "the command line"


def _add_optimisation(p):
    p.add_argument('--lr', default=1e-4, type=float)
    p.add_argument('--lr_backbone', default=5e-5, type=float)
    p.add_argument('--lr_backbone_names', default=['backbone.0'], type=str, nargs='+')
    p.add_argument('--lr_text_encoder', default=1e-5, type=float)
    p.add_argument('--lr_text_encoder_names', default=['text_encoder'], type=str, nargs='+')
    p.add_argument('--lr_linear_proj_names', default=['reference_points', 'sampling_offsets'], type=str, nargs='+')
    p.add_argument('--lr_linear_proj_mult', default=1.0, type=float)
    p.add_argument('--batch_size', default=1, type=int, help='clips per GPU (per process)')
    p.add_argument('--weight_decay', default=5e-4, type=float)
    p.add_argument('--epochs', default=10, type=int)
    p.add_argument('--lr_drop', default=[6, 8], type=int, nargs='+', help='MultiStepLR milestones (epochs)')
    p.add_argument('--clip_max_norm', default=0.1, type=float, help='gradient clipping max norm')
    p.add_argument('--pretrained_weights', type=str, default=None,
                   help='initialise from a checkpoint, dropping its class head (fine-tuning)')
    p.add_argument('--pretrained_keep_class_head', action='store_true',
                   help='with --pretrained_weights, also load the class heads (MeViS-2024: weights-only --resume)')
    p.add_argument('--accumulate', default=1, type=int,
                   help='gradient accumulation steps (keeps the global batch when fewer GPUs are used)')
    p.add_argument('--scale_lr', action='store_true',
                   help='scale the learning rates by (world_size * batch_size * accumulate) / reference global batch')
    p.add_argument('--reference_world_size', default=None, type=int,
                   help="the recipe's GPU count (set by configs); the trainer warns when the world size differs")
    p.add_argument('--reference_batch_size', default=None, type=int, help="the recipe's per-GPU batch (configs)")
    p.add_argument('--amp', nargs='?', const='fp16', default=None, choices=['fp16', 'bf16'],
                   help='mixed precision: `--amp` alone is fp16 with a GradScaler (SgMg), `--amp bf16` bfloat16')
    p.add_argument('--use_fp16', action='store_true', help='MUTR name for --amp fp16')
    p.add_argument('--save_every_iters', default=0, type=int,
                   help='also write checkpoint.pth every N iterations (at an optimiser step), for exact mid-epoch resume')
    p.add_argument('--max_iters_per_epoch', default=None, type=int,
                   help='stop each epoch after this many iterations (smoke runs)')


def _add_model(p):
    p.add_argument('--model', default=None, choices=MODEL_NAMES,
                   help='model variant (default: from the checkpoint config, else referformer)')
    p.add_argument('--with_box_refine', default=False, action='store_true')
    p.add_argument('--two_stage', default=False, action='store_true', help='must stay off')
    p.add_argument('--backbone', default='resnet50', type=str,
                   help='resnet50, resnet101, swin_{t,s,b,l}_p4w7, video_swin_{t,s,b}_p4w7')
    p.add_argument('--backbone_config', default=None, type=yaml.safe_load,
                   help='YAML/JSON dict overriding fields of the backbone zoo config (tiny models)')
    p.add_argument('--backbone_pretrained', default=None, type=str,
                   help='backbone weights (official Swin ImageNet / Video-Swin Kinetics file) for training from scratch')
    p.add_argument('--use_checkpoint', action='store_true', help='activation checkpointing in Swin / Video-Swin')
    p.add_argument('--dilation', action='store_true', help='DC5 for ResNet')
    p.add_argument('--position_embedding', default='sine', type=str, choices=('sine',))
    p.add_argument('--num_feature_levels', default=4, type=int)
    p.add_argument('--enc_layers', default=4, type=int)
    p.add_argument('--dec_layers', default=4, type=int)
    p.add_argument('--dim_feedforward', default=2048, type=int)
    p.add_argument('--hidden_dim', default=256, type=int)
    p.add_argument('--dropout', default=0.1, type=float)
    p.add_argument('--nheads', default=8, type=int)
    p.add_argument('--num_frames', default=5, type=int, help='training clip length')
    p.add_argument('--num_queries', default=5, type=int, help='query slots per frame')
    p.add_argument('--dec_n_points', default=4, type=int)
    p.add_argument('--enc_n_points', default=4, type=int)
    p.add_argument('--pre_norm', action='store_true', help='accepted for compatibility; unused (post-norm)')
    p.add_argument('--freeze_text_encoder', action='store_true')
    p.add_argument('--text_encoder', default='roberta-base', type=str,
                   help='hub name resolved from the local cache only, or a local folder (config, tokenizer, weights)')
    p.add_argument('--masks', action='store_true', default=True,
                   help='segmentation head (always on, as the entry scripts force it)')
    p.add_argument('--mask_dim', default=256, type=int)
    p.add_argument('--controller_layers', default=3, type=int)
    p.add_argument('--dynamic_mask_channels', default=8, type=int)
    p.add_argument('--no_rel_coord', dest='rel_coord', action='store_false')
    p.add_argument('--output_levels', default=4, type=int, help='SgMg: backbone output levels')
    p.add_argument('--msda_impl', default='auto', choices=['auto', 'cuda', 'pytorch'],
                   help='MultiScaleDeformableAttention implementation')


def _add_loss(p):
    p.add_argument('--no_aux_loss', dest='aux_loss', action='store_false')
    p.add_argument('--set_cost_class', default=2, type=float)
    p.add_argument('--set_cost_bbox', default=5, type=float)
    p.add_argument('--set_cost_giou', default=2, type=float)
    p.add_argument('--set_cost_mask', default=2, type=float)
    p.add_argument('--set_cost_dice', default=5, type=float)
    p.add_argument('--set_cost_boundary', default=2, type=float, help='SgMg: defined, unused')
    p.add_argument('--mask_loss_coef', default=2, type=float)
    p.add_argument('--dice_loss_coef', default=5, type=float)
    p.add_argument('--cls_loss_coef', default=2, type=float)
    p.add_argument('--bbox_loss_coef', default=5, type=float)
    p.add_argument('--giou_loss_coef', default=2, type=float)
    p.add_argument('--boundary_loss_coef', default=2, type=float, help='SgMg: defined, unused')
    p.add_argument('--eos_coef', default=0.1, type=float, help='unused with focal loss')
    p.add_argument('--focal_alpha', default=0.25, type=float)


def _add_data(p):
    p.add_argument('--dataset_file', default='ytvos',
                   help='ytvos, mevis, davis, a2d, jhmdb, refcoco, refcoco+, refcocog, all, joint')
    p.add_argument('--coco_path', type=str, default='data/coco')
    p.add_argument('--ytvos_path', type=str, default='data/ref-youtube-vos')
    p.add_argument('--davis_path', type=str, default='data/ref-davis')
    p.add_argument('--a2d_path', type=str, default='data/a2d_sentences')
    p.add_argument('--jhmdb_path', type=str, default='data/jhmdb_sentences')
    p.add_argument('--mevis_path', type=str, default='data/mevis')
    p.add_argument('--max_skip', default=3, type=int, help='accepted; unused (as in the original)')
    p.add_argument('--max_size', default=640, type=int)
    p.add_argument('--binary', action='store_true')
    p.add_argument('--remove_difficult', action='store_true')
    p.add_argument('--a2d_clips_dir', default='clips320H', type=str,
                   help="A2D video folder name under --a2d_path ('clips320H'; some releases call it 'CLIPS320')")
    p.add_argument('--refcoco_min_short_side', default=0, type=int,
                   help='skip RefCOCO images whose short side after resize is below this (SgMg: 200)')
    p.add_argument('--clip_reverse_prob', default=0.0, type=float, help='SgMg: 0.3')
    p.add_argument('--photometric_after_resize', action='store_true', help='SgMg transform order and ranges')
    p.add_argument('--legacy_caption_flip', action='store_true',
                   help="reproduce the original substring left/right swap ('bright' -> 'bleft')")


def _add_runtime(p):
    p.add_argument('--output_dir', default='output')
    p.add_argument('--device', default='cuda')
    p.add_argument('--seed', default=42, type=int)
    p.add_argument('--resume', default='', help='resume from checkpoint (model, optimizer, scheduler, epoch, RNG)')
    p.add_argument('--start_epoch', default=0, type=int)
    p.add_argument('--eval', action='store_true')
    p.add_argument('--num_workers', default=4, type=int)
    p.add_argument('--threshold', default=0.5, type=float)
    p.add_argument('--ngpu', default=None, type=int, help='accepted for compatibility; use torchrun instead')
    p.add_argument('--split', default='valid', type=str)
    p.add_argument('--visualize', action='store_true')
    p.add_argument('--world_size', default=1, type=int)
    p.add_argument('--dist_url', default='env://')
    p.add_argument('--local_rank', '--local-rank', dest='local_rank', default=None, type=int,
                   help='set by `python -m torch.distributed.launch`')
    p.add_argument('--cache_mode', default=False, action='store_true')
    p.add_argument('--exp_name', default='main', help='TensorBoard run name')
    p.add_argument('--current_epoch', default=0, type=int, help='SgMg internal; unused')
    p.add_argument('--model_ckpt', default='checkpoint.pth', help='MUTR name of the checkpoint file')
    p.add_argument('--test_num_ckpt', default=-2, type=int, help='MUTR: index into the sorted checkpoint list')
    p.add_argument('--sub_video_len', default=30, type=int, help='MeViS-2024: sub-clip length for long videos')
    p.add_argument('--no_sampling', action='store_true', help='MeViS-2024: contiguous sub-clips + re-scoring')
    p.add_argument('--legacy_mevis2024_subclips', action='store_true',
                   help="MeViS inference: reproduce the original inference_mevis.py sub-clips, whose sub_video_len is "
                        "overwritten by each expression's last sub-clip length (docs/INFERENCE.md §3)")
    p.add_argument('--legacy_mevis2024_processes', default=1, type=int,
                   help="with --legacy_mevis2024_subclips: the original's --ngpu (each of its processes restarted "
                        "the overwritten length on its share of the sorted videos)")


def get_args_parser() -> argparse.ArgumentParser:
    """Parent parser (``add_help=False``) so scripts can extend it."""
    parser = argparse.ArgumentParser('ReferFormer-family training and inference', add_help=False)
    parser.add_argument('--config', default=None, type=str, help='YAML recipe; the command line overrides it')
    for add in (_add_optimisation, _add_model, _add_loss, _add_data, _add_runtime):
        add(parser)
    for variant in all_variants().values():
        if variant.add_arguments is not None:
            variant.add_arguments(parser.add_argument_group(f'{variant.name} options'))
    return parser


def variant_option_defaults(model_name: Optional[str]) -> Dict[str, Any]:
    """The defaults variant ``model_name`` has where they differ from ReferFormer's ({} for none)."""
    return dict(all_variants()[model_name].option_defaults) if model_name else {}


def apply_variant_defaults(args: argparse.Namespace, model_name: Optional[str], given: Collection[str]) -> None:
    """Set variant ``model_name``'s own defaults on ``args`` for the options that are not ``given`` (command line,
    config: ``option_sources``) and still hold ReferFormer's default."""
    base = get_args_parser()
    for key, value in variant_option_defaults(model_name).items():
        if key not in given and getattr(args, key) == base.get_default(key):
            setattr(args, key, value)


class ConfigError(ValueError):
    """A config file is malformed, has an unknown key, or a value of the wrong type; or an option (from the command
    line or a config) is outside its range."""


AT_LEAST_1, AT_LEAST_0, UNIT_INTERVAL = (1, None), (0, None), (0, 1)
# The range (inclusive, None: unbounded) of the numeric options of main.py and inference.py (the inference-only
# options included): a value outside it would end in a raw traceback deep in a run, or in silent nonsense.
OPTION_RANGES = {
    **dict.fromkeys(("batch_size", "accumulate", "num_frames", "num_queries", "max_size", "hidden_dim", "nheads",
                     "dim_feedforward", "dec_layers", "num_feature_levels", "dec_n_points", "enc_n_points", "mask_dim",
                     "controller_layers", "dynamic_mask_channels", "output_levels", "max_iters_per_epoch",
                     "legacy_mevis2024_processes", "reference_world_size", "reference_batch_size",
                     "world_size", "test_short_side", "test_max_size", "davis_clip_len"), AT_LEAST_1),
    **dict.fromkeys(("lr", "lr_backbone", "lr_text_encoder", "lr_linear_proj_mult", "weight_decay", "clip_max_norm",
                     "epochs", "start_epoch", "lr_drop", "save_every_iters", "enc_layers", "num_workers",
                     "refcoco_min_short_side", "decode_batch", "sub_video_len"), AT_LEAST_0),
    **dict.fromkeys(("threshold", "dropout", "focal_alpha", "clip_reverse_prob"), UNIT_INTERVAL),
}


def check_option_ranges(args: argparse.Namespace, sources: Dict[str, str]) -> None:
    """ConfigError naming the first option of ``OPTION_RANGES`` outside its range, and where it was set."""
    for name, (low, high) in OPTION_RANGES.items():
        value = getattr(args, name, None)
        for item in value if isinstance(value, list) else [value]:
            if item is None or ((low is None or item >= low) and (high is None or item <= high)):
                continue
            where = f"set in {sources[name]}" if name in sources else "the default"
            rule = f"in [{low}, {high}]" if high is not None else f"at least {low}"
            raise ConfigError(f"--{name} {item} ({where}) is out of range: it must be {rule}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key written twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node, deep=False):
        lines: Dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in lines:
                raise ConfigError(f"key '{key}' is written twice (lines {lines[key]} and {line}); only one value "
                                  "can apply")
            lines[key] = line
        return super().construct_mapping(node, deep=deep)


def load_config(path: str, _seen: Optional[List[Path]] = None) -> Dict[str, Any]:
    """Read a YAML recipe, resolving ``_base_`` (a path or list of paths, relative to the file). A key
    repeated within one file is an error naming the file, the key and its lines."""
    path = Path(path)
    seen = (_seen or []) + [path.resolve()]
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not UTF-8 text ({err})") from None
    except ConfigError as err:
        raise ConfigError(f"config file {path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option names to values")
    bases = data.pop('_base_', [])
    merged: Dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        base_path = (path.parent / base)
        if base_path.resolve() in seen:
            raise ConfigError(f"config file {path}: _base_ cycle through {base_path}")
        merged.update(load_config(str(base_path), seen))
    merged.update(data)
    return merged


def _check_value(action: argparse.Action, value: Any, source: str):
    """Validate/convert one config value against the option it sets."""
    name = action.dest
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: '{name}' is a flag and needs true/false, got {value!r}")
        return value
    if value is None:
        return None
    if action.nargs in ('+', '*'):
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{name}' needs a list, got {value!r}")
        return [_convert(action, v, source) for v in value]
    return _convert(action, value, source)


def _convert(action: argparse.Action, value: Any, source: str):
    if action.type is None or action.type is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{source}: '{action.dest}' needs a string, got {value!r}")
        result = str(value)
    elif action.type is yaml.safe_load:
        result = value
    elif action.type is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        result = float(value)
    elif action.type is int and isinstance(value, int) and not isinstance(value, bool):
        result = value
    else:
        raise ConfigError(f"{source}: '{action.dest}' needs {action.type.__name__}, got {value!r}")
    if action.choices is not None and result not in action.choices:
        raise ConfigError(f"{source}: '{action.dest}' must be one of {list(action.choices)}, got {result!r}")
    return result


def apply_config(parser: argparse.ArgumentParser, config: Dict[str, Any], source: str) -> Dict[str, Any]:
    """Set the parser's defaults from a config mapping; returns the recipe-only keys."""
    actions = {a.dest: a for a in parser._actions}
    recipe, defaults = {}, {}
    for key, value in config.items():
        if key in RECIPE_KEYS:
            recipe[key] = value
            continue
        if key not in actions or key in ('help', 'config'):
            raise ConfigError(f"{source}: unknown option '{key}'")
        defaults[key] = _check_value(actions[key], value, source)
    parser.set_defaults(**defaults)
    return recipe


def _config_path(argv: Optional[List[str]]) -> Optional[str]:
    config_only = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    config_only.add_argument('--config', default=None)
    return config_only.parse_known_args(argv)[0].config


def option_sources(argv: Optional[List[str]], parser: argparse.ArgumentParser) -> Dict[str, str]:
    """The options ``argv`` sets, each with where it is set: ``COMMAND_LINE`` or the ``--config`` file's path
    (the command line wins). Options absent from the result keep the parser's default."""
    config_path = _config_path(argv)
    sources = {}
    if config_path:
        sources = {key: config_path for key in load_config(config_path) if key not in RECIPE_KEYS}
    probe = copy.deepcopy(parser)
    probe._defaults.clear()
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    given, _ = probe.parse_known_args(argv)
    sources.update(dict.fromkeys((key for key in vars(given) if key != 'config'), COMMAND_LINE))
    return sources


def parse_args(argv: Optional[List[str]] = None, parser: Optional[argparse.ArgumentParser] = None) -> argparse.Namespace:
    """Parse ``argv`` (default sys.argv) with config-file defaults applied first. The ``--model`` variant's own
    defaults apply to the options neither the command line nor the config sets."""
    parser = parser or argparse.ArgumentParser(parents=[get_args_parser()])
    config_path = _config_path(argv)
    sources = option_sources(argv, parser)
    recipe: Dict[str, Any] = {}
    if config_path:
        recipe = apply_config(parser, load_config(config_path), config_path)
    args = parser.parse_args(argv)
    args.recipe = recipe
    apply_variant_defaults(args, args.model, sources)
    check_option_ranges(args, sources)
    if args.use_fp16 and args.amp is None:
        args.amp = 'fp16'
    if args.local_rank is None and 'LOCAL_RANK' in os.environ:
        args.local_rank = int(os.environ['LOCAL_RANK'])
    args.masks = True
    return args


def parse_args_or_exit(argv: Optional[List[str]], parser: argparse.ArgumentParser) -> argparse.Namespace:
    """``parse_args`` for a command-line tool: a ConfigError ends the program as argparse does (usage, the message,
    exit status 2) instead of in a traceback."""
    try:
        return parse_args(argv, parser)
    except ConfigError as err:
        parser.error(str(err))


def args_to_config(args: argparse.Namespace) -> Dict[str, Any]:
    """A plain dict of the options (what checkpoints store under 'config')."""
    return {k: v for k, v in vars(args).items() if k not in ('recipe',)}
