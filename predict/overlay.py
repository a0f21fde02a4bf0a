"""Overlay videos of binary predictions: every expression's mask in its own colour over the frames."""
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import numpy as np
from PIL import Image

from rvos.predict.base import VideoJob
from rvos.util.video_io import iter_video_frames, read_image_rgb, write_overlay


def job_frames(job: VideoJob) -> Iterator[np.ndarray]:
    """The original RGB frames [H, W, 3] uint8 of a job, in order (a video file is decoded as a stream)."""
    if job.video_file is not None:
        yield from iter_video_frames(job.video_file)
    elif job.decoded_frames is not None:
        yield from (np.asarray(frame) for frame in job.decoded_frames)
    else:
        yield from (np.asarray(read_image_rgb(path)) for path in job.frame_files)


def _read_mask(path: Path) -> Optional[np.ndarray]:
    if not path.is_file():
        return None
    with Image.open(path) as image:
        return np.asarray(image.convert("L")) > 0


def overlay_job(job: VideoJob, expression_dir: Callable[[VideoJob, str], Path], path: Path, fps: float) -> Path:
    """Write ``path`` (.mp4 or .gif): the job's frames with the PNG masks of each of its expressions."""
    names = job.names_for(job.num_frames)

    def masks() -> Iterator[List[Optional[np.ndarray]]]:
        for name in names:
            yield [_read_mask(expression_dir(job, exp.exp_id) / f"{name}.png") for exp in job.expressions]

    return write_overlay(path, job_frames(job), masks(), [exp.text for exp in job.expressions], fps)
