"""Frame loading for inference: decode a video's frames once, resize them as the original inference
transform (``T.Resize(short_side)``: PIL bilinear, long side ``int(short * long / short_orig)``,
optionally capped), keep them as uint8, and do it for the next video while the current one computes.
"""
from collections import deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from rvos.predict.base import Benchmark, VideoJob
from rvos.predict.engine import LoadedVideo
from rvos.datasets.transforms_video import resized_hw
from rvos.util.video_io import FrameReadError, iter_video_frames, read_image_rgb, read_video_frames


def resize_frame(image: Image.Image, short_side: int, max_size: Optional[int]) -> Image.Image:
    """PIL bilinear resize to ``short_side`` (long side capped at ``max_size`` when given); unchanged when the
    size already matches (as torchvision)."""
    height, width = resized_hw(image.height, image.width, short_side, max_size)
    if (height, width) == (image.height, image.width):
        return image
    return image.resize((width, height), Image.BILINEAR)


def frame_tensor(image: Image.Image, short_side: int, max_size: Optional[int]) -> torch.Tensor:
    """One RGB image resized as the inference transform, uint8 [3, h, w]."""
    return torch.from_numpy(np.asarray(resize_frame(image, short_side, max_size)).copy()).permute(2, 0, 1)


def _prepare(image: Image.Image, short_side: int, max_size: Optional[int],
             keep_original: bool = False) -> Tuple[Tuple[int, int], torch.Tensor, Optional[np.ndarray]]:
    """(original (H, W), resized uint8 [3, h, w], the original uint8 [H, W, 3] if kept) of one frame."""
    original = np.asarray(image) if keep_original else None
    return (image.height, image.width), frame_tensor(image, short_side, max_size), original


def load_video(job: VideoJob, benchmark: Benchmark, short_side: int, max_size: Optional[int],
               pool: Executor, keep_original: bool = False) -> LoadedVideo:
    """Decode the frames of ``job`` that its window plan uses, resized, as a ``LoadedVideo`` (with the original
    frames too when ``keep_original``).

    Image folders: only the frames the windows use are read, in parallel on ``pool``. Video files whose
    frame count is known (``job.frame_names``): decoded as a stream, keeping only the resized frames the
    windows use; otherwise (A2D, where the windows depend on the length) decoded whole first. Frames in
    memory (``job.decoded_frames``) are resized as decoded video frames. Raises FrameReadError naming the file
    (and frame) when a frame is missing, corrupt, or of another size than the video's first frame.
    """
    def where(position: int) -> str:
        if job.frame_files is not None:
            return str(job.frame_files[position])
        return f"{job.source} (frame {position})"

    def planned(count: int):
        plan = benchmark.plan(job, count)
        return plan, sorted({p for window in plan.windows for p in window.positions})

    if job.frame_files is not None:
        count = len(job.frame_files)
        plan, positions = planned(count)
        prepared = list(pool.map(lambda p: _prepare(read_image_rgb(job.frame_files[p]), short_side, max_size,
                                                    keep_original), positions))
    elif job.video_file is not None and job.frame_names is not None:
        count = len(job.frame_names)
        plan, positions = planned(count)
        wanted, futures, decoded = set(positions), {}, 0
        for index, frame in enumerate(iter_video_frames(job.video_file)):
            decoded = index + 1
            if index in wanted:
                futures[index] = pool.submit(_prepare, Image.fromarray(frame), short_side, max_size, keep_original)
        if decoded != count:
            raise FrameReadError(f"{job.video_file}: {decoded} frames decoded but {count} expected")
        prepared = [futures[p].result() for p in positions]
    else:
        decoded_frames = job.decoded_frames if job.decoded_frames is not None else read_video_frames(job.video_file)
        count = len(decoded_frames)
        if count == 0:
            raise FrameReadError(f"{job.source}: the video has no frames")
        plan, positions = planned(count)
        prepared = list(pool.map(lambda p: _prepare(Image.fromarray(decoded_frames[p]), short_side, max_size,
                                                    keep_original), positions))
    orig_size = prepared[0][0]
    for position, (size, _, _) in zip(positions, prepared):
        if size != orig_size:
            raise FrameReadError(f"{where(position)}: frame is {size[1]}x{size[0]} (WxH) but the video's first frame "
                                 f"{where(positions[0])} is {orig_size[1]}x{orig_size[0]}")
    frames = torch.stack([frame for _, frame, _ in prepared])
    originals = [original for _, _, original in prepared] if keep_original else None
    return LoadedVideo(frames, {p: i for i, p in enumerate(positions)}, orig_size, job.names_for(count), plan,
                       originals)


class Prefetcher:
    """Iterate ``(job, future of its LoadedVideo)`` while the next ``depth`` videos load in a background thread."""

    def __init__(self, jobs: Iterable[VideoJob], load: Callable[[VideoJob], LoadedVideo], depth: int = 1):
        self.jobs = list(jobs)
        self.load = load
        self.depth = depth
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")

    def __iter__(self) -> Iterator[Tuple[VideoJob, Future]]:
        queue: deque = deque()
        upcoming = iter(self.jobs)
        try:
            for job in upcoming:
                queue.append((job, self.executor.submit(self.load, job)))
                if len(queue) > self.depth:
                    yield queue.popleft()
            while queue:
                yield queue.popleft()
        finally:
            for _, future in queue:
                future.cancel()
            self.executor.shutdown(wait=True)
