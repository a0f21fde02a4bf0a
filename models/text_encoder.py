"""The RoBERTa text encoder: offline resolution of its config, tokenizer and weights.

``--text_encoder`` is either a hub name (``roberta-base``) looked up only in the local
Hugging Face cache, or a local folder holding ``config.json``, the tokenizer files
(``vocab.json`` + ``merges.txt`` or ``tokenizer.json``) and, when no checkpoint supplies them,
the weights. Nothing is downloaded. The architectures of roberta-base / roberta-large ship with
the project (``configs/text_encoders/``), so a model can be built from a checkpoint alone.
"""
import json
import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import List, Optional, Tuple

import torch
from torch import nn
from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

from rvos.util.misc import NestedTensor

logger = logging.getLogger(__name__)

BUILTIN_CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "text_encoders"
TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.json", "merges.txt"))
TOKENIZER_JSON_FILES = ("tokenizer.json", "vocab.json", "tokenizer_config.json", "special_tokens_map.json")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class TextEncoderNotFound(FileNotFoundError):
    """The text encoder (or one of its files) is not available locally."""


class TextEncoderFileError(ValueError):
    """A file of the text encoder exists but cannot be read (truncated, corrupt, not UTF-8, or refused)."""


def _missing_help(name: str, what: str) -> str:
    return (f"text encoder {name!r}: {what}. Nothing is downloaded at run time. Either put the files in a folder "
            f"and pass --text_encoder FOLDER (config.json; vocab.json + merges.txt or tokenizer.json; and "
            f"model.safetensors or pytorch_model.bin when no checkpoint supplies the weights), or fill the Hugging "
            f"Face cache on a machine with internet (`hf download {name}`) and copy it here (HF_HOME).")


def _cached_snapshot(name: str) -> Optional[Path]:
    """The local Hugging Face cache folder of hub model ``name``, or None."""
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # any cache miss or malformed cache entry means "not available locally"
        return None


class TextEncoderSource:
    """Where the config, tokenizer and weights of one text encoder come from."""

    def __init__(self, name: str):
        self.name = name
        path = Path(name).expanduser()
        if path.is_dir():
            self.folder: Optional[Path] = path
        elif os.sep in name or name.startswith("."):
            raise TextEncoderNotFound(_missing_help(name, f"folder {path} does not exist"))
        else:
            self.folder = _cached_snapshot(name)

    def config(self) -> RobertaConfig:
        if self.folder is not None and (self.folder / "config.json").is_file():
            _check_json(self.folder / "config.json", f"text encoder {self.name!r}: config file")
            return RobertaConfig.from_json_file(str(self.folder / "config.json"))
        builtin = BUILTIN_CONFIG_DIR / f"{self.name}.json"
        if builtin.is_file():
            return RobertaConfig.from_json_file(str(builtin))
        where = f"no config.json in {self.folder}" if self.folder else "it is neither a local folder nor in the local cache"
        raise TextEncoderNotFound(_missing_help(self.name, where))

    def tokenizer(self) -> RobertaTokenizerFast:
        if self.folder is None:
            raise TextEncoderNotFound(_missing_help(self.name, "the tokenizer is not in the local cache"))
        if not any(all((self.folder / f).is_file() for f in files) for files in TOKENIZER_FILE_SETS):
            raise TextEncoderNotFound(_missing_help(
                self.name, f"no tokenizer files in {self.folder} (need vocab.json + merges.txt or tokenizer.json)"))
        for name in TOKENIZER_JSON_FILES:
            _check_json(self.folder / name, f"text encoder {self.name!r}: tokenizer file")
        try:
            return RobertaTokenizerFast.from_pretrained(str(self.folder), local_files_only=True)
        except Exception as err:  # the tokenizers library raises plain Exception for a corrupt file
            files = [name for files in TOKENIZER_FILE_SETS for name in files if (self.folder / name).is_file()]
            raise TextEncoderFileError(f"text encoder {self.name!r}: the tokenizer files {files} in {self.folder} "
                                       f"cannot be read ({type(err).__name__}: {err})") from err

    def weights_file(self) -> Path:
        for fname in WEIGHT_FILES:
            if self.folder is not None and (self.folder / fname).is_file():
                return self.folder / fname
        where = f"no {' or '.join(WEIGHT_FILES)} in {self.folder}" if self.folder else "the weights are not in the local cache"
        raise TextEncoderNotFound(_missing_help(self.name, where))


def build_roberta(source: TextEncoderSource) -> RobertaModel:
    """RoBERTa with a pooling layer, randomly initialised from the source's config (no weights read)."""
    config = source.config()
    return RobertaModel(config, add_pooling_layer=True)


def load_text_encoder_weights(model: RobertaModel, source: TextEncoderSource) -> None:
    """Load the pretrained RoBERTa weights strictly (the MLM head of a full checkpoint is dropped)."""
    path = source.weights_file()
    state = _read_weights(path)
    state = {k[len("roberta."):] if k.startswith("roberta.") else k: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("lm_head.") and k != "embeddings.position_ids"}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise RuntimeError(f"text encoder weights {path} do not match the {source.name} architecture: {err}") from err
    logger.info("loaded text encoder weights from %s", path)


def _check_json(path: Path, what: str) -> None:
    """A JSON file of the text encoder (when present) must be UTF-8 JSON; TextEncoderFileError naming it otherwise."""
    if not path.is_file():
        return
    try:
        json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise TextEncoderFileError(f"{what} {path} is not valid UTF-8 JSON (truncated or corrupt): {err}") from err


def _read_weights(path: Path) -> dict:
    """The state dict of a ``model.safetensors`` or ``pytorch_model.bin`` (read with ``weights_only=True``);
    TextEncoderFileError naming the file and what is wrong otherwise."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise TextEncoderFileError(f"text encoder weights {path} ({path.stat().st_size} bytes) are not a "
                                       f"readable safetensors file, truncated or corrupt: {err}") from err
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise TextEncoderFileError(
            f"text encoder weights {path}: torch.load(weights_only=True) refuses it: it pickles objects other than "
            "tensors (loading it could run code) or it is corrupt. Convert it to model.safetensors on a machine you "
            f"trust, or use the model.safetensors of the same release. ({_refusal_reason(err)})") from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise TextEncoderFileError(f"text encoder weights {path} ({path.stat().st_size} bytes) cannot be read, "
                                   f"truncated or corrupt: {err}") from err


def _refusal_reason(err: Exception) -> str:
    """The line of torch's weights-only refusal that says what was refused (its first lines are generic advice)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), lines[0] if lines else "")


class TextEncoding:
    """Encoded captions: ``words`` NestedTensor ([B, L, C] features, [B, L] mask True=padding) and
    ``sentence`` [B, C]."""

    def __init__(self, words: NestedTensor, sentence: torch.Tensor):
        self.words = words
        self.sentence = sentence

    def select(self, index: torch.Tensor) -> "TextEncoding":
        """Rows ``index`` of the batch (e.g. to repeat one caption for several clips)."""
        return TextEncoding(NestedTensor(self.words.tensors[index], self.words.mask[index]), self.sentence[index])


def tokenize(tokenizer: RobertaTokenizerFast, captions: List[str], device) -> Tuple[dict, torch.Tensor]:
    """Pad to the longest caption; returns the model inputs and the padding mask [B, L] (True = padding)."""
    if not captions or not all(isinstance(c, str) for c in captions):
        raise ValueError(f"captions must be a non-empty list of strings, got {captions!r}")
    tokenized = tokenizer(captions, padding="longest", return_tensors="pt").to(device)
    return tokenized, tokenized["attention_mask"].ne(1)
