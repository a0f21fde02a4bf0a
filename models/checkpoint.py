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

A checkpoint may also be a *folder* in the Hugging Face layout, written by ``tools/convert_checkpoint.py``:
``config.json`` (the model options, see ``write_checkpoint_folder``) and ``model.safetensors`` (the weights).
``read_checkpoint`` reads it without unpickling anything and returns what the ``.pth`` gave (weights and options;
a folder holds no optimiser state), so every caller loads either. ``checkpoint_layout`` reads a checkpoint's
keys, shapes and options without reading its weights (safetensors header, or a memory-mapped ``torch.load``).
"""
import argparse
import json
import logging
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from rvos.util.write_failure import is_write_failure, write_failure

from rvos.util.safe_pickle import load_plain_pickle

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


def read_detectron2_pickle(path: Path) -> dict:
    """A detectron2 ``.pkl`` checkpoint (``{'model': {name: numpy array}, ...}``, e.g. Mask2Former's model zoo) with
    tensors for arrays; only arrays and plain containers are unpickled (``util.safe_pickle``)."""
    try:
        data = load_plain_pickle(path, allow_arrays=True, encoding="latin1")
    except (pickle.UnpicklingError, OSError) as err:
        raise CheckpointError(f"checkpoint {path} cannot be read as a detectron2 .pkl weights file: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("model", data), dict):
        raise CheckpointError(f"checkpoint {path} is not a detectron2 weights file (expected a dict with 'model')")
    weights = data.get("model", data)
    return {"model": {k: torch.as_tensor(v) for k, v in weights.items() if hasattr(v, "shape")}}


def read_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint file with ``weights_only=True`` (Namespace allowlisted), a detectron2 ``.pkl`` (restricted
    reader), or a checkpoint folder (``config.json`` + ``model.safetensors``, nothing unpickled). Raises
    CheckpointError naming the file when it is missing, truncated, corrupt or not a checkpoint."""
    path = Path(path)
    if path.is_dir():
        return _read_checkpoint_folder(path, map_location)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix == ".pkl":
        return read_detectron2_pickle(path)
    return _checkpoint_dict(path, _torch_load(path, map_location=map_location))


def _torch_load(path: Path, **kwargs):
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, weights_only=True, **kwargs)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, OSError, ValueError) as err:
        size = path.stat().st_size
        raise CheckpointError(f"checkpoint {path} ({size} bytes) cannot be read; the file is truncated, corrupt "
                              f"or holds objects outside the allowlist: {err}") from err


def _checkpoint_dict(path: Path, ckpt) -> dict:
    """``ckpt`` as ``{'model': state dict, ...}`` (a bare state dict is wrapped); CheckpointError otherwise."""
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


def compare_shapes(own: Dict[str, tuple], theirs: Dict[str, tuple], allowed_missing: Iterable[str] = ()
                   ) -> Tuple[List[str], List[str], List[Tuple[str, tuple, tuple]]]:
    """(missing, unexpected, wrongly shaped) names of ``theirs`` (a checkpoint's name -> shape) against ``own`` (the
    model's), the last as (name, checkpoint shape, model shape). Names starting with an ``allowed_missing`` prefix
    are not reported as missing."""
    allowed = tuple(allowed_missing)
    missing = [k for k in own if k not in theirs and not (allowed and k.startswith(allowed))]
    unexpected = [k for k in theirs if k not in own]
    shapes = [(k, tuple(theirs[k]), tuple(own[k])) for k in own if k in theirs and tuple(theirs[k]) != tuple(own[k])]
    return missing, unexpected, shapes


def compare_state_dict(model: nn.Module, state: Dict[str, torch.Tensor],
                       allowed_missing: Iterable[str] = ()) -> Tuple[List[str], List[str], List[Tuple[str, tuple, tuple]]]:
    """(missing, unexpected, wrongly shaped) keys of ``state`` against ``model``'s state dict.
    Keys starting with an ``allowed_missing`` prefix are not reported as missing."""
    return compare_shapes({k: tuple(v.shape) for k, v in model.state_dict().items()},
                          {k: tuple(v.shape) for k, v in state.items()}, allowed_missing)


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
    variant = _variant_hint(unexpected, missing, [s[0] for s in shapes], ckpt_config, model_config)
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


def _variant_hint(unexpected, missing, shared, ckpt_config: Optional[dict],
                  model_config: Optional[dict]) -> Optional[str]:
    """'the checkpoint is from another model variant' when its keys or its config show one (``shared``: the keys
    both have, with other shapes)."""
    run = None if model_config is None else model_config.get("model") or "referformer"
    theirs = model_name_from_keys(unexpected)
    if theirs is None and run is not None:
        theirs = model_name_from_config(ckpt_config)
    if (theirs is None and run not in (None, "referformer") and model_name_from_keys(missing) == run
            and model_name_from_keys(shared) != run):
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
    ``keep_class_head`` loads them too (the MeViS-2024 solution's weights-only ``--resume``). A model with an
    ``adapt_pretrained_state(state) -> (state, prefixes left fresh)`` method adapts foreign layouts first (DsHmp:
    a Mask2Former checkpoint)."""
    ckpt = read_checkpoint(path)
    drop = () if keep_class_head else ("class_embed",)
    state = {k: v for k, v in normalise_state_dict(ckpt["model"]).items() if k.split(".", 1)[0] not in drop}
    allowed = tuple(f"{d}." for d in drop)
    adapt = getattr(model, "adapt_pretrained_state", None)
    if adapt is not None:
        state, fresh = adapt(state)
        allowed += tuple(fresh)
    left = load_state_dict_strict(model, state, str(path), allowed_missing=allowed,
                                  ckpt_config=checkpoint_config(ckpt), model_config=model_config)
    logger.info("initialised from %s; kept fresh: %s", path, ", ".join(left) or "nothing")
    return left


# ------------------------------------------------------------------------------------------ checkpoint folders

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FOLDER_FORMAT = "rvos-checkpoint"
FOLDER_FORMAT_VERSION = 1
# config.json's ``options_source``: where the options of the original file were (they are read back there).
OPTIONS_SOURCES = ("config", "args")
ALIASES_METADATA = "aliases"


def is_checkpoint_folder(path) -> bool:
    """Whether ``path`` is a folder holding a converted checkpoint (``model.safetensors``)."""
    return Path(path).is_dir() and (Path(path) / WEIGHTS_FILE).is_file()


def checkpoint_exists(path) -> bool:
    """A checkpoint file or folder is at ``path`` (what ``--resume`` / ``--pretrained_weights`` accept)."""
    return Path(path).is_file() or is_checkpoint_folder(path)


def _json_options(options: dict, source: str) -> dict:
    """``options`` as JSON values (tuples become lists); a value JSON cannot hold is an error naming it."""
    out = {}
    for key, value in options.items():
        try:
            out[key] = json.loads(json.dumps(value))
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{source}: option {key!r} = {value!r} cannot be written to {CONFIG_FILE} "
                                  f"({err})") from err
    return out


def _unique_tensors(state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """(tensors to store, aliases: name -> stored name). Names of one tensor (same storage, offset, shape, stride,
    dtype; e.g. ``bbox_embed.*`` and ``transformer.decoder.bbox_embed.*`` with box refinement) are stored once;
    other tensors sharing memory are stored as contiguous copies (safetensors holds no views)."""
    stored: Dict[str, torch.Tensor] = {}
    aliases: Dict[str, str] = {}
    seen: Dict[tuple, str] = {}
    storages: Dict[int, int] = {}
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"state dict entry {name!r} is a {type(tensor).__name__}, not a tensor")
        identity = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
                    tensor.stride(), tensor.dtype) if tensor.numel() else None
        if identity is not None and identity in seen:
            aliases[name] = seen[identity]
            continue
        if identity is not None:
            seen[identity] = name
            storages[identity[0]] = storages.get(identity[0], 0) + 1
        stored[name] = tensor
    for name, tensor in stored.items():
        shared = tensor.numel() and storages.get(tensor.untyped_storage().data_ptr(), 0) > 1
        if shared or not tensor.is_contiguous():
            stored[name] = tensor.detach().clone(memory_format=torch.contiguous_format)
        else:
            stored[name] = tensor.detach()
    return stored, aliases


def write_checkpoint_folder(ckpt: dict, folder, source: str = "checkpoint") -> Path:
    """Write ``ckpt`` (as ``read_checkpoint`` returns it) as a folder: ``model.safetensors`` (the weights, each
    tensor bit for bit; tied names recorded in the metadata) and ``config.json``::

        {"format": "rvos-checkpoint", "format_version": 1,
         "model_type": <variant: referformer, sgmg, mutr, ...>,
         "options_source": "config" (options of this project) | "args" (a public checkpoint's pickled
                            argparse.Namespace) | null (a bare state dict),
         "options": {<option>: <value>, ...} | null,
         "epoch": <int> | absent}

    Optimiser, scheduler and other training state are not kept (a folder is for inference and fine-tuning).
    Both files are written to temporary names and renamed, config.json last."""
    folder = Path(folder)
    options, options_source = None, None
    if isinstance(ckpt.get("config"), dict):
        options, options_source = ckpt["config"], "config"
    elif isinstance(ckpt.get("args"), argparse.Namespace):
        options, options_source = vars(ckpt["args"]), "args"
    config = {"format": FOLDER_FORMAT, "format_version": FOLDER_FORMAT_VERSION,
              "model_type": model_name_from_config(options) or model_name_from_keys(ckpt["model"]),
              "options_source": options_source,
              "options": None if options is None else _json_options(options, source)}
    if isinstance(ckpt.get("epoch"), int):
        config["epoch"] = ckpt["epoch"]
    stored, aliases = _unique_tensors(ckpt["model"])
    folder.mkdir(parents=True, exist_ok=True)
    weights_tmp = folder / f".{WEIGHTS_FILE}.tmp{os.getpid()}"
    config_tmp = folder / f".{CONFIG_FILE}.tmp{os.getpid()}"
    try:
        save_file(stored, str(weights_tmp), metadata={"format": "pt", ALIASES_METADATA: json.dumps(aliases)})
        config_tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        os.replace(weights_tmp, folder / WEIGHTS_FILE)
        os.replace(config_tmp, folder / CONFIG_FILE)
    finally:
        for tmp in (weights_tmp, config_tmp):
            if tmp.exists():
                tmp.unlink()
    return folder


def read_folder_config(folder) -> dict:
    """The ``config.json`` of a checkpoint folder, checked; CheckpointError naming the file otherwise."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint folder {folder} has no {CONFIG_FILE} (a converted checkpoint holds "
                              f"{CONFIG_FILE} and {WEIGHTS_FILE}; see tools/convert_checkpoint.py)")
    try:
        config = json.loads(path.read_text())
    except (ValueError, OSError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(config, dict) or config.get("format") != FOLDER_FORMAT:
        raise CheckpointError(f"{path} is not the config of a converted checkpoint (no \"format\": "
                              f"\"{FOLDER_FORMAT}\")")
    if config.get("format_version", 0) > FOLDER_FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {config['format_version']}; this code reads up to "
                              f"{FOLDER_FORMAT_VERSION}: update the code")
    if config.get("options_source") not in (None, *OPTIONS_SOURCES) or not isinstance(config.get("options"),
                                                                                     (dict, type(None))):
        raise CheckpointError(f"{path}: 'options_source' must be config, args or null and 'options' a mapping")
    return config


def _options_entry(config: dict) -> Dict[str, Any]:
    """The options of a folder's config as the ``.pth`` held them: ``{'config': dict}`` or ``{'args': Namespace}``."""
    if config.get("options_source") is None or config.get("options") is None:
        return {}
    if config["options_source"] == "args":
        return {"args": argparse.Namespace(**config["options"])}
    return {"config": dict(config["options"])}


def _open_weights(folder: Path):
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint folder {folder} has no {WEIGHTS_FILE}")
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} ({path.stat().st_size} bytes) cannot be read; the file is truncated or "
                              f"corrupt: {err}") from err


def _aliases(handle, path: Path) -> Dict[str, str]:
    try:
        return json.loads((handle.metadata() or {}).get(ALIASES_METADATA, "{}"))
    except ValueError as err:
        raise CheckpointError(f"{path}: the '{ALIASES_METADATA}' metadata is not valid JSON: {err}") from err


def _read_checkpoint_folder(folder: Path, map_location="cpu") -> dict:
    config = read_folder_config(folder)
    path = folder / WEIGHTS_FILE
    device = map_location if isinstance(map_location, (str, torch.device)) else "cpu"
    state: Dict[str, torch.Tensor] = {}
    with _open_weights(folder) as handle:
        aliases = _aliases(handle, path)
        try:
            for name in handle.keys():
                state[name] = handle.get_tensor(name).to(device)
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{path} cannot be read; the file is truncated or corrupt: {err}") from err
    for name, target in aliases.items():
        if target not in state:
            raise CheckpointError(f"{path}: {name!r} is recorded as a second name of {target!r}, which is missing")
        state[name] = state[target]
    ckpt = {"model": state, **_options_entry(config)}
    if isinstance(config.get("epoch"), int):
        ckpt["epoch"] = config["epoch"]
    return ckpt


@dataclass
class CheckpointLayout:
    """What a checkpoint holds without its weights: ``shapes`` (state-dict name -> shape), ``dtypes`` (name ->
    torch dtype name) and its options (``checkpoint_config``: ours or a legacy Namespace's, None without)."""

    source: str
    shapes: Dict[str, Tuple[int, ...]]
    dtypes: Dict[str, str]
    config: Optional[dict]
    legacy: bool


SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                      "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def checkpoint_layout(path) -> CheckpointLayout:
    """The keys, shapes, dtypes and options of a checkpoint file or folder, reading no weights into memory: a
    folder's safetensors header, or a ``.pth`` memory-mapped (``torch.load(mmap=True, weights_only=True)``, the
    Namespace allowlisted; a file in the pre-1.6 format, which cannot be mapped, is read whole)."""
    path = Path(path)
    if path.is_dir():
        config = read_folder_config(path)
        with _open_weights(path) as handle:
            aliases = _aliases(handle, path / WEIGHTS_FILE)
            shapes, dtypes = {}, {}
            for name in handle.keys():
                tensor_slice = handle.get_slice(name)
                shapes[name] = tuple(tensor_slice.get_shape())
                dtypes[name] = SAFETENSORS_DTYPES.get(tensor_slice.get_dtype(), tensor_slice.get_dtype().lower())
        for name, target in aliases.items():
            shapes[name], dtypes[name] = shapes[target], dtypes[target]
        entry = _options_entry(config)
        return CheckpointLayout(str(path), shapes, dtypes, checkpoint_config(entry), "config" not in entry)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = _torch_load(path, map_location="cpu", mmap=True)
    except CheckpointError as err:
        if "mmap" not in str(err.__cause__):
            raise
        logger.info("%s is in the pre-1.6 torch format, which cannot be memory-mapped: reading it whole", path)
        ckpt = _torch_load(path, map_location="cpu")
    ckpt = _checkpoint_dict(path, ckpt)
    state = ckpt["model"]
    return CheckpointLayout(str(path), {k: tuple(v.shape) for k, v in state.items()},
                            {k: str(v.dtype).replace("torch.", "") for k, v in state.items()},
                            checkpoint_config(ckpt), not isinstance(ckpt.get("config"), dict))


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
