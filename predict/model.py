"""The model for inference: rebuilt from a checkpoint's own config, or from the options (legacy
checkpoints, or random weights for pipeline tests with ``--allow_random_weights``)."""
import argparse
import copy
import logging
from typing import Dict, Iterable, Mapping, Optional, Tuple, Union

import torch

from rvos.models import build_model
from rvos.models.variants import get_variant
from rvos.models.checkpoint import (CheckpointMismatchError, architecture_options, infer_model_name,
                                   load_state_dict_strict, read_checkpoint)
from rvos.opts import COMMAND_LINE, apply_variant_defaults

logger = logging.getLogger(__name__)

# Besides models.checkpoint.architecture_options(), options that change the parameters or the outputs.
EXTRA_ARCHITECTURE_OPTIONS = ("dilation", "two_stage", "aux_loss", "output_levels", "position_embedding",
                              "freeze_text_encoder")
# Kept from this run even when the checkpoint says otherwise: where the files are, not what the model is.
RUN_OPTIONS = ("text_encoder",)
# Taken from the checkpoint without a warning: for inference they also mean something else (the benchmark).
SILENT_OPTIONS = ("dataset_file",)


def default_short_side(model_name: Optional[str]) -> int:
    """The inference resize of a model variant: 360 (ReferFormer, SgMg), 432 (MUTR and the MeViS-2024 solution)."""
    return get_variant(model_name or "referformer").inference_short_side


def inference_resize(benchmark, model_name: Optional[str], short_side: Optional[int] = None,
                     max_size: Optional[int] = None) -> Tuple[int, Optional[int]]:
    """(short side, long-side cap) of the frames: the given ones (``--test_short_side`` / ``--test_max_size``), else
    the benchmark's, else the model variant's short side and no cap."""
    return (short_side or benchmark.short_side or default_short_side(model_name)), (max_size or benchmark.max_size)


def _sources(explicit: Union[Mapping[str, str], Iterable[str]]) -> Dict[str, str]:
    """``opts.option_sources`` output, or a plain collection of option names (taken as given on the command line)."""
    return dict(explicit) if isinstance(explicit, Mapping) else dict.fromkeys(explicit, COMMAND_LINE)


def _given(key: str, sources: Dict[str, str]) -> str:
    """How an option was given, for messages: ``--key`` or ``'key' of config.yaml``."""
    return f"--{key}" if sources[key] == COMMAND_LINE else f"'{key}' of {sources[key]}"


def same_parameters(name: Optional[str], other: Optional[str]) -> bool:
    """Whether two variants have the same parameters (a checkpoint of one is one of the other: TFVOS and
    ReferFormer), so ``--model`` may choose either."""
    try:
        return get_variant(name or "referformer").layout() == get_variant(other or "referformer").layout()
    except ValueError:  # a variant this checkout does not have
        return False


def model_options_from_config(args: argparse.Namespace, config: dict,
                              explicit: Union[Mapping[str, str], Iterable[str]]) -> argparse.Namespace:
    """``args`` with the architecture options of a checkpoint ``config`` (ours). An option given on the command
    line or in the --config file (``explicit``: ``opts.option_sources``) that the checkpoint contradicts is
    reported and the checkpoint wins, except ``RUN_OPTIONS`` and a ``--model`` with the checkpoint's parameters
    (``same_parameters``)."""
    model_args = copy.copy(args)
    sources = _sources(explicit)
    for key in architecture_options() + EXTRA_ARCHITECTURE_OPTIONS:
        if key not in config:
            continue
        if key in RUN_OPTIONS and key in sources:
            continue
        if key == "model" and key in sources and same_parameters(args.model, config[key]):
            if args.model != config[key]:
                logger.info("--model %s on a %s checkpoint: the same parameters, built as %s", args.model,
                            config[key], args.model)
            continue
        if key in sources and key not in SILENT_OPTIONS and getattr(args, key, None) != config[key]:
            logger.warning("%s %r ignored: the checkpoint was trained with %r", _given(key, sources),
                           getattr(args, key), config[key])
        setattr(model_args, key, config[key])
    return model_args


def legacy_model_options(args: argparse.Namespace, legacy_config: Optional[dict], state_dict: dict,
                         explicit: Union[Mapping[str, str], Iterable[str]]) -> argparse.Namespace:
    """``args`` for a legacy checkpoint (pickled Namespace, no config of ours): the variant comes from the
    checkpoint (its variant-only options or its keys) unless ``--model`` was given (on the command line or in the
    --config file), with that variant's own defaults for the options neither sets (``explicit``:
    ``opts.option_sources``); the other architecture flags come from the command line."""
    model_args = copy.copy(args)
    sources = _sources(explicit)
    if "model" in sources and args.model:
        return model_args
    model_args.model = infer_model_name(legacy_config, state_dict)
    apply_variant_defaults(model_args, model_args.model, sources)
    if model_args.model != (args.model or "referformer"):
        logger.info("legacy checkpoint of a %s model: building --model %s", model_args.model, model_args.model)
    return model_args


def _build_for_checkpoint(model_args: argparse.Namespace, resume, legacy_config: Optional[dict], state_dict: dict,
                          sources: Dict[str, str]) -> torch.nn.Module:
    """The model of ``model_args``; options the variant's builder refuses are a CheckpointMismatchError naming the
    checkpoint, and for a legacy checkpoint whose ``--model`` was given, the variant its keys suggest."""
    try:
        return build_model(model_args)[0]
    except ValueError as err:
        hint = ""
        guess = infer_model_name(legacy_config, state_dict) if "model" in sources else None
        if guess is not None and guess != model_args.model:
            hint = (f"; the checkpoint looks like a {guess} model and {_given('model', sources)} asks for "
                    f"{model_args.model}: pass --model {guess} (or leave it out to build what the checkpoint holds)")
        raise CheckpointMismatchError(f"checkpoint {resume}: cannot build the {model_args.model} model with these "
                                      f"options ({err}){hint}") from err


def build_inference_model(args: argparse.Namespace, explicit: Union[Mapping[str, str], Iterable[str]] = ()
                          ) -> Tuple[torch.nn.Module, argparse.Namespace]:
    """The model of ``--resume`` (strictly loaded; rebuilt from its config when it has one) or, with
    ``--allow_random_weights``, of the options with random weights (seeded by ``--seed``), in eval mode on
    the CPU, with its tokenizer read, and the options it was built from."""
    resume = getattr(args, "resume", "")
    if resume:
        ckpt = read_checkpoint(resume)
        config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else None
        legacy = None if config is not None else ckpt.get("args")
        legacy_config = vars(legacy) if isinstance(legacy, argparse.Namespace) else None
        model_args = (model_options_from_config(args, config, explicit) if config is not None
                      else legacy_model_options(args, legacy_config, ckpt["model"], explicit))
        torch.manual_seed(args.seed)
        model = _build_for_checkpoint(model_args, resume, legacy_config if config is None else None, ckpt["model"],
                                      _sources(explicit))
        load_state_dict_strict(model, ckpt["model"], str(resume), ckpt_config=config or legacy_config,
                               model_config=vars(model_args))
        logger.info("loaded %s (%s)", resume, "architecture from its config" if config is not None
                    else "legacy checkpoint: architecture from the command line")
    elif getattr(args, "allow_random_weights", False):
        logger.warning("no --resume: RANDOM weights (--allow_random_weights); the masks are meaningless")
        model_args = args
        torch.manual_seed(args.seed)
        model, _, _ = build_model(args)
    else:
        raise ValueError("inference needs weights: --resume CHECKPOINT (or --config with --allow_random_weights for "
                         "pipeline tests and benchmarks)")
    getattr(model, "tokenizer", None)  # read now: a broken tokenizer file stops the run once, before any video
    return model.eval(), model_args
