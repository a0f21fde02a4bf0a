"""Which frames of a video make up one training or evaluation clip.

``sample_clip_indices`` is the sparse sampler **S** shared by Ref-YouTube-VOS, Ref-DAVIS17, MeViS and
A2D-Sentences training (DATASETS.md §1.3); ``centred_window`` is the contiguous, edge-padded window of
A2D/JHMDB evaluation (§4.4, §5.2). All randomness comes from Python's global ``random`` so that
seeding it (the DataLoader does so per worker) makes clips reproducible.
"""
import random
from typing import List

LOCAL_OFFSETS = (1, 3)


def sample_clip_indices(frame_id: int, video_len: int, num_frames: int, reverse_prob: float = 0.0) -> List[int]:
    """Sampler S: ``num_frames`` sorted frame positions in ``[0, video_len)`` around ``frame_id``.

    Start from ``frame_id``; unless ``num_frames == 1`` add one neighbour 1..3 positions before and
    one 1..3 after (clamped to the video). When ``num_frames > 3`` add ``num_frames - 3`` "global"
    positions: drawn without replacement from the positions below the current minimum plus those from
    the current maximum (inclusive) upward when that pool is larger than needed, else from the whole
    video when it is long enough, else the whole video plus random extra positions (drawn without
    replacement while the video has enough frames, with replacement beyond). The positions are
    sorted (duplicates allowed), truncated to ``num_frames`` and, with probability ``reverse_prob``
    (SgMg: 0.3), reversed.
    """
    if video_len < 1:
        raise ValueError(f"cannot sample a clip from a video with {video_len} frames")
    if not 0 <= frame_id < video_len:
        raise ValueError(f"frame_id {frame_id} is outside a video of {video_len} frames")
    if num_frames < 1:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    indices = [frame_id]
    if num_frames != 1:
        before = random.randint(*LOCAL_OFFSETS)
        after = random.randint(*LOCAL_OFFSETS)
        indices += [max(0, frame_id - before), min(video_len - 1, frame_id + after)]
        if num_frames > 3:
            indices += _global_indices(min(indices), max(indices), video_len, num_frames - len(indices))
    indices.sort()
    indices = indices[:num_frames]
    if reverse_prob > 0 and random.random() < reverse_prob:
        indices.reverse()
    return indices


def _global_indices(low: int, high: int, video_len: int, count: int) -> List[int]:
    everything = list(range(video_len))
    pool = everything[:low] + everything[high:]
    if len(pool) > count:
        return random.sample(pool, count)
    if video_len >= count:
        return random.sample(everything, count)
    extra = count - video_len
    if extra <= video_len:
        return random.sample(everything, extra) + everything
    return random.choices(everything, k=extra) + everything


def sample_near_reference(video_len: int, num_frames: int, frame_range: int) -> List[int]:
    """VITA / DsHmp training frames: a uniformly drawn reference frame plus ``num_frames - 1`` others within
    ``frame_range`` positions of it (without replacement when there are enough, else with), sorted."""
    if video_len < 2:
        raise ValueError(f"cannot sample a clip around a reference frame from a video of {video_len} frame(s)")
    reference = random.randrange(video_len)
    nearby = [i for i in range(max(0, reference - frame_range), min(video_len, reference + frame_range + 1))
              if i != reference]
    count = num_frames - 1
    others = random.sample(nearby, count) if len(nearby) > count else random.choices(nearby, k=count)
    return sorted(others + [reference])


def centred_window(center: int, num_frames: int, first: int, last: int) -> List[int]:
    """Positions ``[center - T//2, center + (T+1)//2)`` clamped to ``[first, last]`` (edge padding)."""
    if last < first:
        raise ValueError(f"empty frame range [{first}, {last}]")
    start = center - num_frames // 2
    return [min(max(i, first), last) for i in range(start, start + num_frames)]
