"""RefCOCO ``refs(*).p`` files are read without running anything a hostile pickle asks for."""
import os
import pickle
import shutil
from pathlib import Path

import pytest

from rvos.datasets.checks import check_dataset
from rvos.datasets.synthetic import make_dataset
from rvos.util.safe_pickle import UnsafePickleError, load_plain_pickle


class _MakeDirectory:
    """Unpickling this object calls ``os.mkdir(marker)``: the payload of a hostile refs file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _payload_file(path: Path, marker: Path, protocol: int) -> Path:
    refs = [{"ref_id": 0, "ann_id": 1, "image_id": 2, "category_id": 1, "split": "train", "sent_ids": [0],
             "sentences": [{"sent": "the dog", "tokens": ["the", "dog"]}], "payload": _MakeDirectory(marker)}]
    path.write_bytes(pickle.dumps(refs, protocol=protocol))
    return path


@pytest.fixture(scope="module")
def refcoco(tmp_path_factory):
    return make_dataset("refcoco", tmp_path_factory.mktemp("refcoco") / "coco", seed=3)


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_payload_is_refused_and_never_runs(tmp_path, protocol):
    marker = tmp_path / "payload_ran"
    hostile = _payload_file(tmp_path / "refs(unc).p", marker, protocol)
    with pytest.raises(UnsafePickleError) as error:
        load_plain_pickle(hostile)
    assert str(hostile) in str(error.value) and "mkdir" in str(error.value)
    assert not marker.exists()
    with open(hostile, "rb") as handle:  # the same file through plain pickle does run its payload
        pickle.load(handle)
    assert marker.is_dir()


def test_checker_names_the_hostile_refs_file_and_checks_the_rest(refcoco, tmp_path):
    root = Path(shutil.copytree(refcoco, tmp_path / "coco"))
    marker = tmp_path / "payload_ran"
    hostile = _payload_file(root / "refcoco" / "refs(unc).p", marker, protocol=2)
    split_file = root / "refcoco" / "instances_refcoco_val.json"
    split_file.write_text(split_file.read_text()[:-40])  # a second problem, found although the pickle was refused
    problems = check_dataset("refcoco", root)
    assert not marker.exists()
    messages = {p.path: p.message for p in problems}
    assert set(messages) == {hostile, split_file}
    assert "mkdir" in messages[hostile] and "refused" in messages[hostile]


def test_generated_refs_load_as_plain_pickle_does(refcoco):
    for name, file_name in (("refcoco", "refs(unc).p"), ("refcocog", "refs(umd).p")):
        path = refcoco / name / file_name
        with open(path, "rb") as handle:
            expected = pickle.load(handle)
        assert load_plain_pickle(path) == expected and expected


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, pickle.HIGHEST_PROTOCOL])
def test_plain_containers_of_every_protocol_are_admitted(tmp_path, protocol):
    data = {"ids": [1, 2**70, -3], "box": (1.5, 2.0), "tags": {"a", "b"}, "frozen": frozenset({1}),
            "raw": b"\x00\xff", "buffer": bytearray(b"xy"), "none": None, "flag": True, "text": "caf\u00e9"}
    path = tmp_path / "plain.p"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    assert load_plain_pickle(path) == data


def test_truncated_pickle_is_named(refcoco, tmp_path):
    path = tmp_path / "refs(unc).p"
    path.write_bytes((refcoco / "refcoco" / "refs(unc).p").read_bytes()[:100])
    with pytest.raises(pickle.UnpicklingError, match=r"refs\(unc\)\.p: not a readable pickle"):
        load_plain_pickle(path)
