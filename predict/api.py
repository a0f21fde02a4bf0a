"""The Python API: segment one's own video with one's own sentences.

    from rvos import Predictor
    predictor = Predictor.from_pretrained("ytvos_swin_tiny.pth", device="cuda")   # or a converted folder
    result = predictor("clip.mp4", ["the dog", "the red car"])
    result.masks[0].shape          # (T, H, W) bool, the first expression
    result.overlay("clip_overlay.mp4"); result.save_pngs("masks/")

This is ``inference.py --video`` without the files: the same job (``benchmarks.video.video_job``), the same frame
loading and resize (``loading.load_video``), the same windows (``--sub_video_len`` sub-videos, so memory is
bounded by the window for any video length) and the same engine (``engine.InferenceEngine``: the visual backbone
runs once per window for all expressions), thresholded as the PNG writer does. Its masks are the command line's,
pixel for pixel.
"""
import argparse
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Set, Union

import numpy as np
import torch
from PIL import Image

from rvos import opts
from rvos.models.checkpoint import checkpoint_layout
from rvos.models.variants import MODEL_NAMES
from rvos.predict.base import VideoJob
from rvos.predict.benchmarks.video import VideoBenchmark, custom_expressions, video_job
from rvos.predict.engine import AMP_DTYPES, InferenceEngine
from rvos.predict.loading import load_video
from rvos.predict.model import build_inference_model, inference_resize
from rvos.predict.options import options_to_argv
from rvos.predict.prediction import MaskCollector, Prediction
from rvos.predict.zoo import architecture_names, architecture_values, identify_layout, load_zoo
from rvos.util.video_io import DEFAULT_FPS, video_fps

logger = logging.getLogger(__name__)

VideoInput = Union[str, Path, np.ndarray, torch.Tensor, Sequence[Image.Image], Sequence[np.ndarray]]
# Name of a video given as frames in memory (its frames are 00000, 00001, ...).
IN_MEMORY_NAME = "video"


def zoo_architecture(path, options: Dict[str, Any]) -> Dict[str, Any]:
    """For a public checkpoint given without architecture options: the options of the architecture whose parameter
    names and shapes it has exactly (a zoo entry's config, or the options it records; ``predict.zoo.identify``),
    so that ``from_pretrained("ytvos_swin_tiny.pth")`` needs no ``backbone=``. Empty for a checkpoint of ours (it
    carries its config), when options name the architecture, or when nothing fits (then loading reports what
    differs)."""
    layout = checkpoint_layout(path)
    if not layout.legacy or set(options) & set(architecture_names()):
        return {}
    overrides = {"text_encoder": options["text_encoder"]} if options.get("text_encoder") else {}
    ident = identify_layout(layout, load_zoo(), Path(path).name, overrides)
    if ident.fits and all(fit.variant not in MODEL_NAMES for fit in ident.fits):
        raise ValueError(f"{path} is a {ident.fits[0].variant} checkpoint: that variant is not built here")
    args = ident.architecture_args()
    if args is None:
        return {}
    source = ", ".join(e.id for e in ident.entries) or "the options it records"
    logger.info("%s: the architecture of %s (names and shapes match exactly)", path, source)
    return architecture_values(args)


def frames_in_memory(video) -> Optional[Sequence[np.ndarray]]:
    """uint8 RGB frames [H, W, 3] of a video given in memory (an array or tensor [T, H, W, 3] uint8, or a list of
    PIL images or arrays), None for a path; ValueError for anything else."""
    if isinstance(video, (str, Path)):
        return None
    if isinstance(video, torch.Tensor):
        video = video.detach().cpu().numpy()
    if isinstance(video, np.ndarray):
        if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(f"a video array must be uint8 [T, H, W, 3] (RGB), got {video.dtype} {list(video.shape)}")
        if len(video) == 0:
            raise ValueError("the video array has no frames")
        return video
    if isinstance(video, (list, tuple)):
        if not video:
            raise ValueError("the list of frames is empty")
        frames = []
        for index, frame in enumerate(video):
            if isinstance(frame, Image.Image):
                frame = np.asarray(frame.convert("RGB"))
            if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
                kind = type(frame).__name__ if not isinstance(frame, np.ndarray) else f"{frame.dtype} {list(frame.shape)}"
                raise ValueError(f"frame {index} must be a PIL image or a uint8 RGB array [H, W, 3], got {kind}")
            frames.append(frame)
        return frames
    raise ValueError(f"video must be a file, a folder of frames, a uint8 array [T, H, W, 3] or a list of PIL images; "
                     f"got {type(video).__name__}")


class Predictor:
    """A model ready to segment videos. Build it with ``from_pretrained``; call it with a video and expressions.

    threshold: mask threshold on probabilities (0.5); sub_video_len / no_sampling: the long-video windows
    (``--sub_video_len`` sub-videos of at most that many frames, interleaved or contiguous; 0: one window);
    short_side / max_size: the inference resize (default: the model variant's, 360 or MUTR's 432, no cap);
    decode_batch: expressions decoded together (1 gives the command line's masks bit for bit); num_workers:
    frame-decoding threads.
    """

    def __init__(self, model: torch.nn.Module, args: argparse.Namespace, device: Union[str, torch.device] = "cpu",
                 amp: Optional[str] = None, decode_batch: int = 1, short_side: Optional[int] = None,
                 max_size: Optional[int] = None, num_workers: int = 2):
        if amp is not None and amp not in AMP_DTYPES:
            raise ValueError(f"amp must be None or one of {', '.join(AMP_DTYPES)}, got {amp!r}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.args = args
        self.benchmark = VideoBenchmark(args)
        self.short_side, self.max_size = inference_resize(self.benchmark, getattr(args, "model", None), short_side,
                                                          max_size)
        self.num_workers = max(1, num_workers)
        self.engine = InferenceEngine(self.model, self.device, decode_batch=decode_batch, amp=amp,
                                      size_divisibility=self.benchmark.size_divisibility)

    @classmethod
    def from_pretrained(cls, path, device: Optional[str] = None, amp: Optional[str] = None, threshold: float = 0.5,
                        sub_video_len: int = 30, no_sampling: bool = False, short_side: Optional[int] = None,
                        max_size: Optional[int] = None, decode_batch: int = 1, num_workers: int = 2,
                        **options) -> "Predictor":
        """The model of checkpoint ``path`` (a ``.pth``, public or ours, or a folder converted by
        ``tools/convert_checkpoint.py``), loaded strictly, on ``device`` (default: CUDA when available),
        ``amp`` None / 'fp16' / 'bf16' (autocast).

        A checkpoint of this project carries its options: the architecture is rebuilt from them. A public
        checkpoint's architecture is the one whose parameter names and shapes it has exactly (a zoo entry's, see
        ``tools/zoo.py identify``), unless keyword ``options`` give it (``backbone="swin_l_p4w7"``,
        ``with_box_refine=True``, ...; named as the command line's, ``python inference.py --help``), as for
        ``inference.py``. ``text_encoder``: a local RoBERTa folder or cached hub name. A mismatch raises
        ``CheckpointMismatchError`` with a table of what differs."""
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        given = dict(zoo_architecture(path, options), **options, resume=str(path), device=device, threshold=threshold,
                     sub_video_len=sub_video_len, no_sampling=no_sampling)
        parser = opts.get_args_parser()
        args = opts.parse_args(options_to_argv(parser, given), argparse.ArgumentParser(parents=[parser]))
        model, model_args = build_inference_model(args, explicit=set(given))
        return cls(model, model_args, device, amp=amp, decode_batch=decode_batch, short_side=short_side,
                   max_size=max_size, num_workers=num_workers)

    @property
    def threshold(self) -> float:
        return self.args.threshold

    def job(self, video: VideoInput, expressions: Union[str, Sequence[str]]) -> VideoJob:
        """The ``VideoJob`` of a video input and its expressions (see ``__call__``)."""
        texts = [expressions] if isinstance(expressions, str) else list(expressions)
        frames = frames_in_memory(video)
        if frames is None:
            return video_job(Path(video), texts)
        return VideoJob(IN_MEMORY_NAME, custom_expressions(texts), decoded_frames=frames)

    def __call__(self, video: VideoInput, expressions: Union[str, Sequence[str]],
                 progress: Optional[Callable[[int, int], None]] = None) -> Prediction:
        """Segment ``expressions`` (a sentence or a list) in ``video``: a video file (mp4, webm, gif, ...), a
        folder of frames (image files in name order), a uint8 array or tensor [T, H, W, 3] (RGB), or a list of
        PIL images. ``progress(done, total)`` is called as masks (frames x expressions) are computed.
        Raises FrameReadError naming the file (and frame) of a frame that cannot be read."""
        job = self.job(video, expressions)
        with ThreadPoolExecutor(self.num_workers, thread_name_prefix="frames") as pool:
            loaded = load_video(job, self.benchmark, self.short_side, self.max_size, pool)
        collector = MaskCollector(len(job.expressions), loaded.num_frames, self.threshold)
        total = loaded.num_frames * len(job.expressions)
        done = [0]

        def advance(count: int) -> None:
            done[0] += count
            if progress is not None:
                progress(done[0], total)

        needed: Set[int] = set(range(len(job.expressions)))
        self.engine.run(job, loaded, needed, collector.add, progress=advance)
        fps = video_fps(job.video_file) if job.video_file is not None else float(DEFAULT_FPS)
        return Prediction(job, collector.masks, collector.scores, loaded.frame_names, fps)
