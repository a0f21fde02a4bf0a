"""Training inputs that used to end in a raw traceback without the file: a truncated JPEG, a non-UTF-8 meta file,
a broken text-encoder file. Each error names the file and what is wrong; the other inputs still load."""
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from rvos import opts
from rvos.datasets.a2d import derive_single_frame_annotations
from rvos.datasets.registry import build_dataset
from rvos.datasets.synthetic import make_dataset
from rvos.models import build_model, load_text_encoder_weights
from rvos.models.text_encoder import TextEncoderFileError, TextEncoderSource
from rvos.tools.make_tiny_text_encoder import write_tiny_text_encoder
from rvos.util.video_io import FrameReadError
from train_support import TINY_CONFIG


@pytest.fixture(scope="module")
def ytvos(tmp_path_factory):
    return make_dataset("ytvos", tmp_path_factory.mktemp("bad_training") / "ytvos", seed=6, num_videos=2,
                        num_valid_videos=1, num_test_videos=1, num_frames=4, min_frames=4)


@pytest.fixture(scope="module")
def text_encoder(tmp_path_factory):
    return write_tiny_text_encoder(tmp_path_factory.mktemp("text_encoder") / "tiny")


def _ytvos_train(root):
    args = SimpleNamespace(ytvos_path=str(root), num_frames=2, max_size=640, clip_reverse_prob=0.0)
    return build_dataset("train", args, dataset_file="ytvos")


def test_a_truncated_training_jpeg_is_named_and_the_other_videos_load(ytvos, tmp_path):
    root = Path(shutil.copytree(ytvos, tmp_path / "ytvos"))
    video = sorted((root / "train" / "JPEGImages").iterdir())[0]
    for frame in video.glob("*.jpg"):
        data = frame.read_bytes()
        frame.write_bytes(data[: len(data) // 2])
    dataset = _ytvos_train(root)
    broken = [i for i, sample in enumerate(dataset.samples) if sample.video == video.name]
    assert broken and len(broken) < len(dataset)
    with pytest.raises(FrameReadError, match=rf"{video}/\d+\.jpg: cannot decode frame \(image file is truncated"):
        dataset[broken[0]]
    clip, target = dataset[next(i for i in range(len(dataset)) if i not in broken)]
    assert clip.shape[0] == 2 and target["masks"].shape[0] == 2


def test_a_non_utf8_training_meta_file_is_named(ytvos, tmp_path):
    root = Path(shutil.copytree(ytvos, tmp_path / "ytvos"))
    meta = root / "meta_expressions" / "train" / "meta_expressions.json"
    meta.write_bytes(meta.read_text(encoding="utf-8").encode("latin-1") + b"\xe9")
    with pytest.raises(ValueError, match=rf"{meta}: not UTF-8 text \(byte b'\\xe9' at offset \d+\)"):
        _ytvos_train(root)


def test_a_non_utf8_a2d_sentence_file_is_named(tmp_path):
    root = make_dataset("a2d", tmp_path / "a2d", seed=6, num_frames=10)
    sentences = root / "text_annotations" / "a2d_annotation.txt"
    sentences.write_bytes(sentences.read_bytes().replace(b"the", "th\u00e9".encode("latin-1"), 1))
    with pytest.raises(ValueError, match=rf"{sentences}: not UTF-8 text \(byte b'\\xe9' at offset \d+\)"):
        derive_single_frame_annotations(root, "train")


def _model_args(text_encoder: Path):
    return opts.parse_args(["--config", str(TINY_CONFIG), "--text_encoder", str(text_encoder), "--device", "cpu"])


@pytest.mark.parametrize("damage, message", [
    ("vocab.json", r"tokenizer file {folder}/vocab.json is not valid UTF-8 JSON \(truncated or corrupt\)"),
    ("merges.txt", r"the tokenizer files \['vocab.json', 'merges.txt'\] in {folder} cannot be read"),
])
def test_a_truncated_tokenizer_file_is_named(text_encoder, tmp_path, damage, message):
    folder = Path(shutil.copytree(text_encoder, tmp_path / "text_encoder"))
    data = (folder / damage).read_bytes()
    (folder / damage).write_bytes(data[: len(data) // 2])
    model, _, _ = build_model(_model_args(folder))
    with pytest.raises(TextEncoderFileError, match=message.format(folder=folder)):
        model.encode_text(["the dog"])


def test_a_truncated_config_json_is_named(text_encoder, tmp_path):
    folder = Path(shutil.copytree(text_encoder, tmp_path / "text_encoder"))
    (folder / "config.json").write_text((text_encoder / "config.json").read_text()[:40])
    with pytest.raises(TextEncoderFileError, match=rf"config file {folder}/config.json is not valid UTF-8 JSON"):
        TextEncoderSource(str(folder)).config()


def test_truncated_safetensors_are_named(text_encoder, tmp_path):
    folder = Path(shutil.copytree(text_encoder, tmp_path / "text_encoder"))
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    model, _, _ = build_model(_model_args(folder))
    with pytest.raises(TextEncoderFileError, match=rf"{weights} \(1000 bytes\) are not a readable safetensors file"):
        load_text_encoder_weights(model)


class _MakeDirectory:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_a_pickle_payload_in_pytorch_model_bin_is_refused_and_named(text_encoder, tmp_path):
    folder = Path(shutil.copytree(text_encoder, tmp_path / "text_encoder"))
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "payload_ran"
    weights = folder / "pytorch_model.bin"
    torch.save({"embeddings.word_embeddings.weight": torch.zeros(2), "hook": _MakeDirectory(marker)}, weights)
    model, _, _ = build_model(_model_args(folder))
    with pytest.raises(TextEncoderFileError, match=rf"{weights}: torch.load\(weights_only=True\) refuses it.*"
                                                  r"GLOBAL posix.mkdir"):
        load_text_encoder_weights(model)
    assert not marker.exists()
    torch.load(weights, weights_only=False)  # the payload is live: an unrestricted load runs it
    assert marker.is_dir()


def test_valid_text_encoder_files_still_load(text_encoder):
    model, _, _ = build_model(_model_args(text_encoder))
    load_text_encoder_weights(model)
    assert model.encode_text(["the dog"]).sentence.shape[0] == 1
