"""Clip sampler S, collation and the resumable distributed sampler."""
import random

import pytest
import torch
from torch.utils.data import DistributedSampler

from rvos.datasets.clip_sampler import centred_window, sample_clip_indices
from rvos.datasets.collate import collate_fn
from rvos.datasets.samplers import ResumableDistributedSampler


# ---------------------------------------------------------------------------------- sampler S

def replay_s(seed, frame_id, video_len, num_frames):
    """Sampler S written out from DATASETS.md §1.3, drawing from a seeded ``random`` in the same order."""
    random.seed(seed)
    indices = [frame_id]
    before, after = random.randint(1, 3), random.randint(1, 3)
    indices += [max(0, frame_id - before), min(video_len - 1, frame_id + after)]
    global_n = num_frames - 3
    everything = list(range(video_len))
    pool = everything[:min(indices)] + everything[max(indices):]
    if len(pool) > global_n:
        indices += random.sample(pool, global_n)
    elif video_len >= global_n:
        indices += random.sample(everything, global_n)
    else:
        indices += random.sample(everything, global_n - video_len) + everything
    return sorted(indices)[:num_frames]


@pytest.mark.parametrize("frame_id, video_len, num_frames", [
    (0, 12, 5), (5, 12, 5), (11, 12, 5), (50, 100, 8), (0, 2, 5), (1, 3, 6), (3, 4, 5),
])
def test_sampler_s_follows_the_spec(frame_id, video_len, num_frames):
    for seed in range(20):
        expected = replay_s(seed, frame_id, video_len, num_frames)
        random.seed(seed)
        assert sample_clip_indices(frame_id, video_len, num_frames) == expected


def test_sampler_s_invariants():
    random.seed(0)
    for _ in range(200):
        video_len = random.randint(1, 40)
        frame_id = random.randrange(video_len)
        num_frames = random.randint(1, 9)
        indices = sample_clip_indices(frame_id, video_len, num_frames)
        assert len(indices) == num_frames
        assert indices == sorted(indices)
        assert all(0 <= i < video_len for i in indices)
        assert frame_id in indices or num_frames == 2  # T=2 keeps the 2 smallest of 3
        if num_frames >= 3:
            low = {max(0, frame_id - d) for d in (1, 2, 3)}
            high = {min(video_len - 1, frame_id + d) for d in (1, 2, 3)}
            assert low & set(indices) and high & set(indices)


def test_sampler_s_single_frame_and_long_clip_of_short_video():
    assert sample_clip_indices(4, 10, 1) == [4]
    random.seed(1)
    indices = sample_clip_indices(0, 1, 8)
    assert indices == [0] * 8


def test_sampler_s_reverse():
    random.seed(3)
    indices = sample_clip_indices(10, 30, 5, reverse_prob=1.0)
    assert indices == sorted(indices, reverse=True) and indices[0] > indices[-1]


def test_sampler_s_rejects_bad_input():
    with pytest.raises(ValueError):
        sample_clip_indices(5, 5, 3)
    with pytest.raises(ValueError):
        sample_clip_indices(0, 0, 3)


@pytest.mark.parametrize("center, num_frames, first, last, expected", [
    (0, 5, 0, 9, [0, 0, 0, 1, 2]),
    (9, 5, 0, 9, [7, 8, 9, 9, 9]),
    (5, 4, 0, 9, [3, 4, 5, 6]),
    (1, 3, 1, 20, [1, 1, 2]),
    (3, 1, 0, 9, [3]),
])
def test_centred_window(center, num_frames, first, last, expected):
    assert centred_window(center, num_frames, first, last) == expected


# ------------------------------------------------------------------------------------ collate

def test_collate_pads_to_multiple_of_32_with_mask():
    clip_a = torch.rand(3, 3, 50, 70)
    clip_b = torch.rand(3, 3, 64, 33)
    targets = [{"caption": "a"}, {"caption": "b"}]
    samples, out_targets = collate_fn([(clip_a, targets[0]), (clip_b, targets[1])])
    tensors, mask = samples.decompose()
    assert tensors.shape == (2, 3, 3, 64, 96)
    assert mask.shape == (2, 3, 64, 96) and mask.dtype == torch.bool
    assert torch.equal(tensors[0, :, :, :50, :70], clip_a)
    assert torch.equal(tensors[1, :, :, :64, :33], clip_b)
    assert (tensors[0, :, :, 50:] == 0).all() and (tensors[1, :, :, :, 33:] == 0).all()
    assert not mask[0, :, :50, :70].any() and mask[0, :, 50:].all() and mask[0, :, :, 70:].all()
    assert not mask[1, :, :, :33].any() and mask[1, :, :, 33:].all()
    assert [t["caption"] for t in out_targets] == ["a", "b"]


def test_collate_exact_multiple_needs_no_padding():
    samples, _ = collate_fn([(torch.rand(1, 3, 64, 32), {})])
    assert samples.tensors.shape == (1, 1, 3, 64, 32) and not samples.mask.any()


# --------------------------------------------------------------------------------- DDP sampler

@pytest.mark.parametrize("size, world, drop_last, shuffle", [
    (23, 1, False, True), (23, 3, False, True), (23, 3, True, True), (24, 4, False, False), (2, 3, False, True),
])
def test_sampler_matches_torch_distributed_sampler(size, world, drop_last, shuffle):
    data = list(range(size))
    for epoch in (0, 3):
        for rank in range(world):
            ours = ResumableDistributedSampler(data, world, rank, shuffle=shuffle, seed=7, drop_last=drop_last)
            theirs = DistributedSampler(data, world, rank, shuffle=shuffle, seed=7, drop_last=drop_last)
            ours.set_epoch(epoch)
            theirs.set_epoch(epoch)
            assert list(ours) == list(theirs)
            assert len(ours) == len(theirs)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_sampler_resume_mid_epoch_sees_exactly_the_rest(world):
    data = list(range(29))
    batch, steps_done = 2, 3
    full = {}
    states = []
    for rank in range(world):
        sampler = ResumableDistributedSampler(data, world, rank, seed=1)
        sampler.set_epoch(2)
        full[rank] = list(sampler)
        for _ in range(steps_done):
            sampler.advance(batch)
        states.append(sampler.state_dict())
    assert all(state == states[0] for state in states)
    for rank in range(world):
        resumed = ResumableDistributedSampler(data, world, rank, seed=1)
        resumed.load_state_dict(states[rank])
        resumed.set_epoch(2)
        assert list(resumed) == full[rank][batch * steps_done:]
        assert len(resumed) == len(full[rank]) - batch * steps_done
        resumed.set_epoch(3)
        assert len(list(resumed)) == len(full[rank]), "a new epoch starts from the beginning"


def test_sampler_resume_with_another_world_size_covers_the_rest():
    data = list(range(20))
    old = ResumableDistributedSampler(data, 2, 0, seed=5)
    old.set_epoch(1)
    order = old.epoch_order()
    old.advance(4)
    state = old.state_dict()
    seen = []
    for rank in range(3):
        new = ResumableDistributedSampler(data, 3, rank, seed=5)
        new.load_state_dict(state)
        new.set_epoch(1)
        seen += list(new)
    assert sorted(seen) == sorted(order[8:]), "the 12 remaining samples, each once (12 is a multiple of 3)"


def test_sampler_rejects_state_of_another_dataset():
    state = ResumableDistributedSampler(list(range(10)), 1, 0).state_dict()
    with pytest.raises(ValueError, match="dataset_size"):
        ResumableDistributedSampler(list(range(11)), 1, 0).load_state_dict(state)
