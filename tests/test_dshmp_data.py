"""DsHmp's training data: per-object MeViS / Ref-YouTube-VOS clips, the reference-frame sampler, the refer groups
of the contrastive memory bank computed from the annotations."""
import json
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as coco_mask

from rvos.datasets.clip_sampler import sample_near_reference
from rvos.datasets.instances import refer_groups
from rvos.datasets.registry import build_dataset
from rvos.datasets.synthetic import make_dataset


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("dshmp_data")
    sizes = dict(num_frames=6, min_frames=5, height=64, width=96)
    return {"mevis": make_dataset("mevis", base / "mevis", seed=2, num_videos=2, num_valid_u_videos=1,
                                  num_valid_videos=1, **sizes),
            "ytvos": make_dataset("ytvos", base / "ytvos", seed=2, num_videos=2, num_valid_videos=1,
                                  num_test_videos=1, **sizes)}


def identity_args(**extra):
    return SimpleNamespace(model="dshmp", num_frames=3, max_size=96, dshmp_frame_range=2, **extra)


def test_reference_sampler_stays_near_the_reference():
    random.seed(0)
    for video_len in (2, 3, 30):
        for _ in range(50):
            positions = sample_near_reference(video_len, num_frames=4, frame_range=2)
            assert positions == sorted(positions) and len(positions) == 4
            assert max(positions) - min(positions) <= 4 and all(0 <= p < video_len for p in positions)
    with pytest.raises(ValueError, match="1 frame"):
        sample_near_reference(1, 4, 2)


def test_refer_groups_as_get_refer_id_with_its_key_quirk():
    videos = {"a": {"frames": ["0"], "expressions": {"0": {"obj_id": [1, 12]}, "1": {"obj_id": [11, 2]},
                                                     "2": {"obj_id": [2, 11]}, "3": {"obj_id": [1, 12]}}},
              "b": {"frames": ["0", "1"], "expressions": {"0": {"obj_id": [1, 12]}, "1": {"obj_id": [3]}}}}
    groups = refer_groups(videos)
    assert groups.index == {("a", "0"): 0, ("a", "1"): 1, ("a", "2"): 2, ("a", "3"): 3, ("b", "0"): 4, ("b", "1"): 5}
    assert groups.positives[0] == [0, 1, 3]  # "112" == "112": the original's collision
    assert groups.negatives[0] == [2]
    assert groups.positives[4] == [4] and groups.negatives[4] == [5]
    exact = refer_groups(videos, exact=True)
    assert exact.positives[0] == [0, 3] and exact.positives[1] == [1, 2]


def test_mevis_instance_clips(roots):
    root = roots["mevis"]
    dataset = build_dataset("train", identity_args(mevis_path=str(root)), dataset_file="mevis")
    meta = json.loads((root / "train" / "meta_expressions.json").read_text())["videos"]
    mask_dict = json.loads((root / "train" / "mask_dict.json").read_text())
    numbered = [(v, e) for v, entry in meta.items() for e in entry["expressions"]]
    random.seed(1)
    multi_seen = False
    for idx in range(len(dataset)):
        sample = dataset.samples[idx]
        frames, target = dataset.load_clip(idx)
        expression = meta[sample.video]["expressions"][sample.exp_id]
        positions = target["frames_idx"].tolist()
        order = np.argsort(expression["obj_id"])
        assert target["instance_ids"].tolist() == sorted(expression["obj_id"])
        masks = target["masks"].reshape(len(order), len(positions), *target["masks"].shape[-2:])
        for k, obj in enumerate(order):
            for t, position in enumerate(positions):
                rle = mask_dict[str(expression["anno_id"][obj])][position]
                expected = coco_mask.decode(rle).astype(bool) if rle else np.zeros(masks.shape[-2:], bool)
                assert np.array_equal(masks[k, t].numpy(), expected)
        assert numbered[target["refer_id"]] == (sample.video, sample.exp_id)
        assert target["refer_id"] in target["positives"].tolist()
        assert target["num_expressions"] == len(numbered)
        multi_seen |= len(order) > 1
    assert multi_seen
    clip, target = dataset[0]
    assert clip.shape[0] == 3 and target["instance_masks"].shape[1] == 3
    assert target["instance_masks"].shape[-2:] == clip.shape[-2:] and target["instance_masks"].any()


def test_clips_without_a_visible_target_are_redrawn(roots):
    """An expression whose objects show in none of the sampled frames is replaced by another sample."""
    root = roots["mevis"]
    dataset = build_dataset("train", identity_args(mevis_path=str(root)), dataset_file="mevis")
    hidden = dataset.samples[0]
    reader = dataset.mask
    dataset.mask = lambda s, k, p, f, path: (np.zeros((f.height, f.width), bool) if s is hidden
                                              else reader(s, k, p, f, path))
    random.seed(3)
    for _ in range(5):
        _, target = dataset[0]
        assert (target["video"], target["exp_id"]) != (hidden.video, hidden.exp_id)
        assert target["instance_masks"].any()


def test_ytvos_instance_clips(roots):
    root = roots["ytvos"]
    dataset = build_dataset("train", identity_args(ytvos_path=str(root)), dataset_file="ytvos")
    random.seed(4)
    frames, target = dataset.load_clip(0)
    sample = dataset.samples[0]
    assert target["instance_ids"].tolist() == list(sample.obj_ids) and len(sample.obj_ids) == 1
    for t, position in enumerate(target["frames_idx"].tolist()):
        label = np.array(Image.open(root / "train" / "Annotations" / sample.video / f"{sample.frames[position]}.png"))
        assert np.array_equal(target["masks"][t].numpy(), label == sample.obj_ids[0])
    assert torch.is_tensor(target["positives"]) and target["refer_id"] in target["positives"].tolist()
