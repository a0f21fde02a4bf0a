"""Overlay videos of binary predictions: every expression's mask in its own colour over the frames."""
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import numpy as np
from PIL import Image

from rvos.predict.base import VideoJob
from rvos.util.video_io import read_image_rgb, read_video_frames, write_overlay


def job_frames(job: VideoJob) -> Iterator[np.ndarray]:
    """The original RGB frames [H, W, 3] uint8 of a job, in order."""
    if job.video_file is not None:
        yield from read_video_frames(job.video_file)
        return
    for path in job.frame_files:
        yield np.asarray(read_image_rgb(path))


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
