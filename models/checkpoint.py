"""Read any public or project checkpoint safely and load it strictly, with a report of what differs.

Public ReferFormer-family checkpoints are ``{'model', 'optimizer', 'lr_scheduler', 'epoch',
'args'}`` with ``args`` a pickled ``argparse.Namespace``; they are read with
``torch.load(weights_only=True)`` plus an explicit allowlist of that one class. Loading is
strict after these documented renames only:

* ``module.`` prefixes (a DDP-wrapped model was saved) are stripped;
* ``text_encoder[.text_backbone].embeddings.position_ids`` is dropped: a persistent buffer in
  transformers < 4.31, a non-persistent one (not in state dicts) since.

``infer_model_name`` tells the variant (ReferFormer, SgMg, MUTR) of a checkpoint from its config or keys; a
checkpoint of another variant is refused with that named in the report.
"""
import argparse
import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

from rvos.util.write_failure import is_write_failure, write_failure

from .variants import MODEL_NAMES, all_variants

logger = logging.getLogger(__name__)

SAFE_GLOBALS = [argparse.Namespace]
DROPPED_KEY_SUFFIXES = ("embeddings.position_ids",)
# Options that change the parameter layout: a mismatch here explains a key mismatch (with each variant's own
# ``architecture_options``, see ``architecture_options()``).
CORE_ARCHITECTURE_OPTIONS = ("model", "backbone", "with_box_refine", "num_queries", "hidden_dim", "enc_layers",
                             "dec_layers", "dim_feedforward", "nheads", "num_feature_levels", "enc_n_points",
                             "dec_n_points", "mask_dim", "controller_layers", "dynamic_mask_channels", "rel_coord",
                             "binary", "dataset_file", "text_encoder", "backbone_config")


def architecture_options() -> Tuple[str, ...]:
    """The options that change the parameter layout: the core's and every variant's own."""
    own = tuple(option for variant in all_variants().values() for option in variant.architecture_options)
    return CORE_ARCHITECTURE_OPTIONS + own


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read or is not a checkpoint."""


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's weights do not fit the model (with a table of the differences)."""


def read_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint file with ``weights_only=True`` (Namespace allowlisted). Raises CheckpointError
    naming the file when it is missing, truncated, corrupt or not a checkpoint dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, OSError, ValueError) as err:
        size = path.stat().st_size
        raise CheckpointError(f"checkpoint {path} ({size} bytes) cannot be read; the file is truncated, corrupt "
                              f"or holds objects outside the allowlist: {err}") from err
    if isinstance(ckpt, dict) and "model" in ckpt and isinstance(ckpt["model"], dict):
        return ckpt
    if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return {"model": ckpt}
    keys = list(ckpt)[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
    raise CheckpointError(f"checkpoint {path} is not a model checkpoint (expected a dict with 'model'; found {keys})")


def checkpoint_config(ckpt: dict) -> Optional[dict]:
    """The options a checkpoint was trained with: ours under 'config', legacy ones as a Namespace under 'args'."""
    if isinstance(ckpt.get("config"), dict):
        return ckpt["config"]
    if isinstance(ckpt.get("args"), argparse.Namespace):
        return vars(ckpt["args"])
    return None


def model_name_from_config(ckpt_config: Optional[dict]) -> Optional[str]:
    """The variant a checkpoint config names: our ``model`` option, or the options only one variant's legacy
    Namespace has; None without a config. A legacy config of none of them is ReferFormer's."""
    if not ckpt_config:
        return None
    if ckpt_config.get("model") in MODEL_NAMES:
        return ckpt_config["model"]
    if "model" in ckpt_config:  # our config with the option unset: the default variant was built
        return "referformer"
    for name, variant in all_variants().items():
        if variant.legacy_options and any(option in ckpt_config for option in variant.legacy_options):
            return name
    return "referformer"


def model_name_from_keys(keys: Iterable[str]) -> Optional[str]:
    """The variant whose own parameters appear among ``keys`` (state-dict names), or None."""
    keys = [k[len("module."):] if k.startswith("module.") else k for k in keys]
    for name, variant in all_variants().items():
        if variant.key_prefixes and any(k.startswith(variant.key_prefixes) for k in keys):
            return name
    if any(k.startswith(("pixel_decoder.", "resizer.")) for k in keys):
        return "referformer"
    return None


def infer_model_name(ckpt_config: Optional[dict], state_dict: Optional[Dict[str, torch.Tensor]] = None) -> str:
    """'referformer', 'sgmg' or 'mutr' (MUTR and its MeViS-2024 fork Tapall) for a checkpoint: from its config
    (``checkpoint_config``: our ``model`` option, or the legacy Namespace's variant-only options, e.g. SgMg's
    ``text_backbone`` / ``output_levels`` / ``amp``, MUTR's ``use_fp16`` / ``model_ckpt`` / ``test_num_ckpt``,
    Tapall's ``sub_video_len``), else from the state-dict keys when given, else 'referformer'."""
    name = model_name_from_config(ckpt_config)
    if name is None and state_dict is not None:
        name = model_name_from_keys(state_dict)
    return name or "referformer"


def normalise_state_dict(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Apply the documented renames (see the module docstring)."""
    out = {}
    for key, value in state.items():
        if key.startswith("module."):
            key = key[len("module."):]
        if key.endswith(DROPPED_KEY_SUFFIXES) and "text_encoder" in key:
            continue
        out[key] = value
    return out


def compare_state_dict(model: nn.Module, state: Dict[str, torch.Tensor],
                       allowed_missing: Iterable[str] = ()) -> Tuple[List[str], List[str], List[Tuple[str, tuple, tuple]]]:
    """(missing, unexpected, wrongly shaped) keys of ``state`` against ``model``'s state dict.
    Keys starting with an ``allowed_missing`` prefix are not reported as missing."""
    own = model.state_dict()
    allowed = tuple(allowed_missing)
    missing = [k for k in own if k not in state and not (allowed and k.startswith(allowed))]
    unexpected = [k for k in state if k not in own]
    shapes = [(k, tuple(state[k].shape), tuple(own[k].shape)) for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    return missing, unexpected, shapes


def mismatch_report(source: str, missing, unexpected, shapes, ckpt_config: Optional[dict] = None,
                    model_config: Optional[dict] = None, limit: int = 25) -> str:
    """A readable table of what differs between a checkpoint and the model."""
    lines = [f"checkpoint {source} does not match the model: {len(missing)} missing, {len(unexpected)} unexpected, "
             f"{len(shapes)} wrongly shaped keys"]
    if ckpt_config and model_config:
        diffs = [(k, ckpt_config.get(k), model_config.get(k)) for k in architecture_options()
                 if k in ckpt_config and ckpt_config.get(k) != model_config.get(k)]
        if diffs:
            lines.append("  architecture options that differ (checkpoint -> this run):")
            lines += [f"    --{k}: {a!r} -> {b!r}" for k, a, b in diffs]
    for title, rows in (("missing in checkpoint", missing), ("unexpected in checkpoint", unexpected)):
        if rows:
            lines.append(f"  {title}:")
            listed = rows if len(rows) <= limit else _key_groups(rows)
            lines += [f"    {k}" for k in listed[:limit]]
            if len(listed) > limit:
                lines.append(f"    ... and {len(listed) - limit} more")
    if shapes:
        lines.append(f"  {'key':60s} {'checkpoint':>20s} {'model':>20s}")
        lines += [f"  {k:60s} {str(list(a)):>20s} {str(list(b)):>20s}" for k, a, b in shapes[:limit]]
    hints = []
    variant = _variant_hint(unexpected, missing, ckpt_config, model_config)
    if variant:
        lines.insert(1, "  " + variant)
    if any(".decoder.bbox_embed." in k for k in unexpected):
        hints.append("the checkpoint was trained with --with_box_refine")
    if any(".decoder.bbox_embed." in k for k in missing):
        hints.append("the checkpoint was trained without --with_box_refine")
    if any(k.startswith("backbone.") for k in missing + unexpected + [s[0] for s in shapes]):
        hints.append("the backbone differs (check --backbone)")
    if any(k == "query_embed.weight" for k, _, _ in shapes):
        hints.append("--num_queries differs")
    if hints:
        lines.append("  likely cause: " + "; ".join(hints))
    return "\n".join(lines)


def _key_groups(keys: List[str]) -> List[str]:
    """Long key lists by module: ``text_encoder.text_backbone.* (101 keys)``, ``input_fft.*.* (32 keys)``."""
    groups: Dict[str, int] = {}
    for key in keys:
        parts = ["*" if part.isdigit() else part for part in key.split(".")[:2]]
        group = ".".join(parts) + ".*"
        groups[group] = groups.get(group, 0) + 1
    return [f"{group} ({count} keys)" for group, count in groups.items()]


def _variant_hint(unexpected, missing, ckpt_config: Optional[dict], model_config: Optional[dict]) -> Optional[str]:
    """'the checkpoint is from another model variant' when its keys or its config show one."""
    run = None if model_config is None else model_config.get("model") or "referformer"
    theirs = model_name_from_keys(unexpected)
    if theirs is None and run is not None:
        theirs = model_name_from_config(ckpt_config)
    if theirs is None and run not in (None, "referformer") and model_name_from_keys(missing) == run:
        theirs = "referformer"  # a bare state dict without this variant's own modules
    if theirs is None or theirs == run:
        return None
    built = f" (this run builds {run})" if run else ""
    return f"the checkpoint is from another model variant: {theirs}{built}; pass --model {theirs} to load it"


def load_state_dict_strict(model: nn.Module, state: Dict[str, torch.Tensor], source: str,
                           allowed_missing: Iterable[str] = (), ckpt_config: Optional[dict] = None,
                           model_config: Optional[dict] = None) -> List[str]:
    """Load ``state`` into ``model``; any difference other than ``allowed_missing`` prefixes raises
    CheckpointMismatchError with a table. Returns the keys left at their initial values."""
    state = normalise_state_dict(state)
    missing, unexpected, shapes = compare_state_dict(model, state, allowed_missing)
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(mismatch_report(source, missing, unexpected, shapes, ckpt_config, model_config))
    own = model.state_dict()
    left = [k for k in own if k not in state]
    merged = {k: state.get(k, own[k]) for k in own}
    model.load_state_dict(merged, strict=True)
    return left


def load_model_checkpoint(model: nn.Module, path, model_config: Optional[dict] = None) -> dict:
    """Read ``path`` and load its weights strictly into ``model``; returns the checkpoint dict."""
    ckpt = read_checkpoint(path)
    load_state_dict_strict(model, ckpt["model"], str(path), ckpt_config=checkpoint_config(ckpt),
                           model_config=model_config)
    logger.info("loaded checkpoint %s", path)
    return ckpt


def load_pretrained_weights(model: nn.Module, path, model_config: Optional[dict] = None,
                            keep_class_head: bool = False) -> List[str]:
    """Fine-tuning initialisation (training starts at epoch 0). By default all weights except the class heads
    (``class_embed.*``), which keep their fresh initialisation as in the original (the class count may differ);
    ``keep_class_head`` loads them too (the MeViS-2024 solution's weights-only ``--resume``)."""
    ckpt = read_checkpoint(path)
    drop = () if keep_class_head else ("class_embed",)
    state = {k: v for k, v in ckpt["model"].items() if k.split(".", 1)[0] not in drop}
    left = load_state_dict_strict(model, state, str(path), allowed_missing=tuple(f"{d}." for d in drop),
                                  ckpt_config=checkpoint_config(ckpt), model_config=model_config)
    logger.info("initialised from %s; kept fresh: %s", path, ", ".join(left) or "nothing")
    return left


def atomic_save(obj, path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over ``path``: a crash
    mid-save leaves the previous file intact. A failed write (a full disk: torch's "unexpected pos") is an
    OutputWriteError naming the file and the free space; the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        if not is_write_failure(err):
            raise
        kept = f"The previous {path.name} is unchanged." if path.exists() else "Nothing was written."
        raise write_failure(path, err, "checkpoint", kept) from err
    finally:
        if tmp.exists():
            tmp.unlink()
