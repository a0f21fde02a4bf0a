"""What inference works on: videos with their expressions (``VideoJob``), the model windows over a
video (``Window``, ``WindowPlan``) and the interface every benchmark implements (``Benchmark``).

A benchmark reads its split (``jobs``), says how each video is cut into model windows (``plan``),
and owns a prediction writer (``writer``) that turns model outputs into the benchmark's files; the
one inference engine (``predict.engine``) and the runner (``predict.runner``) do
the rest for every benchmark.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class Expression:
    """One referring expression: its id (an output folder name, verbatim) and its text."""

    exp_id: str
    text: str


@dataclass
class VideoJob:
    """One video and the expressions to segment in it.

    Frames come from ``frame_files`` (image files, in order), ``video_file`` (decoded with PyAV) or
    ``decoded_frames`` (already in memory: uint8 RGB [H, W, 3] arrays, or one [T, H, W, 3] array; the Python
    API's frames). ``frame_names`` are the output names of the frames (one per frame, in order); None means
    ``00000, 00001, ...`` after decoding. ``num_frames`` is known up front for image folders and
    estimated (for the work balance) for video files. ``info`` holds benchmark-specific data; an
    ``info['invalid']`` message marks a video that cannot be run (reported as a failure, not computed).
    """

    name: str
    expressions: List[Expression]
    frame_files: Optional[List[Path]] = None
    video_file: Optional[Path] = None
    frame_names: Optional[List[str]] = None
    num_frames: int = 0
    info: Dict = field(default_factory=dict)
    decoded_frames: Optional[Sequence[np.ndarray]] = None

    def __post_init__(self):
        sources = [s for s in (self.frame_files, self.video_file, self.decoded_frames) if s is not None]
        if len(sources) != 1:
            raise ValueError(f"video {self.name}: give exactly one of frame_files, video_file and decoded_frames")
        known = self.frame_files if self.frame_files is not None else self.decoded_frames
        if known is not None:
            self.num_frames = len(known)
            if self.frame_names is not None and len(self.frame_names) != len(known):
                raise ValueError(f"video {self.name}: {len(self.frame_names)} frame names for {len(known)} frames")

    @property
    def source(self) -> Path:
        """The folder or file the frames come from (for messages; the name for frames in memory)."""
        if self.video_file is not None:
            return self.video_file
        return self.frame_files[0].parent if self.frame_files is not None else Path(self.name)

    def names_for(self, num_frames: int) -> List[str]:
        """Output frame names once the frame count is known."""
        if self.frame_names is not None:
            return list(self.frame_names)
        return [f"{i:05d}" for i in range(num_frames)]


@dataclass(frozen=True)
class Window:
    """One model input: the video frames at ``positions`` (in this order) and the expressions
    (indices into ``VideoJob.expressions``) decoded on it. ``keep`` (A2D/JHMDB) is the one position
    of the window whose features are decoded (the annotated frame)."""

    positions: Sequence[int]
    expressions: Sequence[int]
    keep: Optional[int] = None


@dataclass(frozen=True)
class WindowPlan:
    """The windows of one video. ``video_query``: one query is chosen for the whole video from all
    windows' scores (contiguous ``--no_sampling`` sub-videos); otherwise each window chooses its own."""

    windows: Sequence[Window]
    video_query: bool = False


def sub_video_windows(num_frames: int, sub_video_len: int, interleaved: bool) -> List[List[int]]:
    """Frame positions of the sub-videos of the MeViS-2024 solution.

    N = max(1, L // S) sub-videos, plus one when L % S != 0 and L > S. Interleaved: sub-video i holds
    frames i, i + N, i + 2N, ...; contiguous: frames [i S, min((i + 1) S, L)). ``sub_video_len`` <= 0
    means one window over the whole video. S is never modified (the original overwrote it with the
    last sub-clip's length, changing later expressions' windows).
    """
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_frames}")
    if sub_video_len <= 0 or sub_video_len >= num_frames:
        return [list(range(num_frames))]
    count = max(1, num_frames // sub_video_len)
    if num_frames % sub_video_len != 0 and num_frames > sub_video_len:
        count += 1
    if interleaved:
        return [list(range(i, num_frames, count)) for i in range(count)]
    return [list(range(i * sub_video_len, min((i + 1) * sub_video_len, num_frames))) for i in range(count)]


def legacy_mevis2024_lengths(videos: Sequence[Tuple[int, int]], sub_video_len: int, interleaved: bool,
                             processes: int = 1) -> List[List[int]]:
    """The sub-clip length S each expression of the original MeViS-2024 ``inference_mevis.py`` used, replayed.

    The original's loop ``sub_video_len = len(sub_frame_names)`` overwrote S with the length of the expression's
    last sub-clip (see ``sub_video_windows``; ``interleaved`` False for ``--no_sampling``), and the overwritten S
    carried over to the next expression and video of the same process. ``videos``: (frame count, expression count) per video in the original's order
    (videos sorted by name, expressions in meta file order); ``processes``: its ``--ngpu``, which gave process i
    the sorted videos [i k, (i + 1) k) with k = len(videos) // processes (the last process the rest), each process
    starting again from ``sub_video_len``. Returns the S of every expression, per video. The state depends only on
    the meta file, so every rank and every resumed run replays it without running a model.
    """
    if sub_video_len < 1:
        raise ValueError(f"--legacy_mevis2024_subclips needs --sub_video_len >= 1 (the original divided by it), "
                         f"got {sub_video_len}")
    if processes < 1:
        raise ValueError(f"--legacy_mevis2024_processes must be >= 1, got {processes}")
    per_process = len(videos) // processes
    starts = {i * per_process for i in range(processes)}
    lengths: List[List[int]] = []
    current = sub_video_len
    for index, (num_frames, num_expressions) in enumerate(videos):
        if index in starts:
            current = sub_video_len
        used = []
        for _ in range(num_expressions):
            used.append(current)
            current = len(sub_video_windows(num_frames, current, interleaved)[-1])
        lengths.append(used)
    return lengths


def contiguous_clips(num_frames: int, clip_len: int) -> List[List[int]]:
    """Consecutive clips of ``clip_len`` frames (the last one shorter), as Ref-DAVIS inference."""
    return [list(range(start, min(start + clip_len, num_frames))) for start in range(0, num_frames, clip_len)]


@dataclass(frozen=True)
class Unit:
    """One output of a video that is complete or not as a whole (an expression's PNG folder, a DAVIS
    annotator's sequence folder, an A2D sample's results): ``key`` names it, ``path`` is where it lives
    when complete, ``expressions`` are the expression indices needed to produce it."""

    key: str
    path: Path
    expressions: Sequence[int]


class Benchmark:
    """Per-benchmark behaviour behind the one engine. Subclasses set ``name`` and implement ``jobs``,
    ``plan`` and ``make_writer``; the others have defaults.

    ``size_divisibility``: the padding of the model input (1 = none, as the original inference of
    one video). ``short_side`` / ``max_size``: the resize, overridable with ``--test_short_side`` /
    ``--test_max_size`` (None short side: the model's default, 360 or MUTR's 432).
    """

    name = ""
    size_divisibility = 1
    # Expressions may refer to zero or several objects (MeViS): models that can output that do so.
    multi_object = False
    short_side: Optional[int] = None
    max_size: Optional[int] = None
    zip_by_default = False

    def __init__(self, args):
        self.args = args

    # --------------------------------------------------------------- reading
    @property
    def split(self) -> str:
        return self.args.split

    @property
    def output_root(self) -> Path:
        """Where this run's predictions go: ``<output_dir>/<split>``."""
        return Path(self.args.output_dir) / self.split

    def jobs(self) -> List[VideoJob]:
        raise NotImplementedError

    def plan(self, job: VideoJob, num_frames: int) -> WindowPlan:
        raise NotImplementedError

    def work(self, job: VideoJob, expressions: Sequence[int]) -> int:
        """The masks (frames x expressions) computed for ``expressions`` of ``job`` (for the progress bar)."""
        return len(expressions) * job.num_frames

    def make_writer(self, pool):
        """The prediction writer (see ``predict.writers``) using thread ``pool`` for files."""
        raise NotImplementedError

    def given_mask_path(self, root: Path, job: VideoJob, exp: int, position: int, frame_name: str) -> Path:
        """Where a tree of this benchmark's output layout under ``root`` holds the mask of expression ``exp`` in
        the frame at ``position`` (named ``frame_name``): the initial masks of key-frame inference."""
        raise NotImplementedError(f"{self.name} predictions are not per-frame masks of whole videos")

    def given_mask(self, label_map: np.ndarray, exp: int) -> np.ndarray:
        """The mask [H, W] bool of expression ``exp`` in a label map read from ``given_mask_path``."""
        raise NotImplementedError(f"{self.name} predictions are not per-frame masks of whole videos")

    # --------------------------------------------------------------- after all videos
    def zip_path(self) -> Optional[Path]:
        """The submission zip this run writes (None: no zip for this benchmark / split)."""
        return None

    def submission_entries(self, jobs: Sequence[VideoJob], predictions: bool = True):
        """A ``predict.submission.SubmissionEntry`` (name in the zip, prediction file, frame file) for
        every file of the submission, in order; ``predictions=False`` leaves the prediction files out (None),
        to check a zip without this run's output folder."""
        raise NotImplementedError(f"{self.name} has no submission zip")

    def finish(self, jobs: Sequence[VideoJob]) -> None:
        """Called on rank 0 after every video is complete (merge files, ...)."""


def window_cost(num_frames: int, num_expressions: int) -> int:
    """Work estimate of a video for the balance between ranks: the backbone runs once per frame and
    the decoder once per frame and expression."""
    return max(1, num_frames) * (1 + num_expressions)


def check_frame_folder(job_name: str, folder: Path, frame_names: Sequence[str], extension: str) -> List[Path]:
    """The frame files ``<folder>/<name><extension>`` of a video (existence is checked when loading)."""
    if not frame_names:
        raise ValueError(f"video {job_name}: the meta lists no frames")
    return [Path(folder) / f"{name}{extension}" for name in frame_names]
