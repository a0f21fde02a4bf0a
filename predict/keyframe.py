"""TFVOS key-frame inference (the original ``inference_frame_key.py``), run by ``inference.py --key_frames ...``.

For every (video, expression): a key frame k and its mask; then the TFVOS model segments one frame at a time,
forward from k to the last frame and backward from k to the first, each step conditioned on a prompt: the frame
just processed with everything outside the mask just predicted set to zero (1-frame clip, 1-frame prompt, the
query chosen per frame, the mask thresholded at the original size, exactly as the original).

- Key frames (``--key_frames``): ``model`` (the model's own whole-video pass, run first in the same command: the
  frame where the chosen query's score is highest), a JSON file (the original ``c_key_frame_dict.json``,
  ``{video: {expression position: frame index}}``, or the ICCV-2023 ``key_frame.json``, ``{video: {exp_id:
  {"index_info": {"class_index": frame index}}}}``), or a ``--save_logits`` folder (the frame of the highest
  ``frame_scores``: ``np.argmax``, ties to the first, the ICCV-2023 rule).
- Key-frame masks (``--key_frame_masks``): ``model`` (the whole-video pass: the TFVOS weights without the prompt
  branch, i.e. run as ReferFormer, as the original's earlier ``inference_ytvos.py`` run) or a folder in the
  benchmark's output layout (``<video>/<exp_id>/<frame>.png`` with foreground 255; Ref-DAVIS17
  ``anno_<a>/<sequence>/<i>.png`` with object k as label k + 1).
- TFVOS QUIRK (skipped first neighbour, the default): the original skips the first frame in each direction
  (k + 1 and k - 1 keep their initial masks, and k + 2 / k - 2 are prompted by the key frame itself);
  ``--tfvos_fixed_propagation`` predicts them, prompted by the key frame. The key frame always keeps its mask.
- Shared mode (default): in each direction the frames are visited in order and every expression whose
  propagation reaches the frame steps on it, so the frame's backbone features (text-independent) are computed
  once for all the video's expressions; the prompts of a step go through the backbone ``--decode_batch`` at a
  time (1: bit-identical to ``--per_expression``, which runs the whole model per expression and step).
- A missing key-frame entry, a key frame outside the video or a missing / wrong-sized initial mask fails that
  expression only (named in ``failures.json``); the video's other expressions are written.

``propagate`` runs the same propagation for one expression outside ``inference.py`` (the ensemble's
mask-prompted propagator).
"""
import contextlib
import logging
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from rvos.datasets.base import read_json, read_label_map
from rvos.datasets.prompt_frames import masked_frame
from rvos.models.tfvos.model import TFVOS
from rvos.models.variants import get_variant
from rvos.predict.base import Benchmark, VideoJob, Window, WindowPlan
from rvos.predict.engine import (AMP_DTYPES, Emit, InferenceEngine, LoadedVideo, RunOutcome, Stop, never_stop,
                                 normalize_frames)
from rvos.predict.loading import frame_tensor
from rvos.predict.postprocess import ExpressionOutput
from rvos.predict.writers import LogitsStore, load_logits
from rvos.util.misc import NestedTensor, nested_tensor_from_videos_list

logger = logging.getLogger(__name__)

FROM_MODEL = "model"
DIRECTIONS = ("forward", "backward")
DEFAULT_SHORT_SIDE = get_variant("tfvos").inference_short_side


class KeyFrameError(ValueError):
    """A key frame or key-frame mask of one expression cannot be had (it fails that expression only)."""


def add_keyframe_arguments(parser) -> None:
    """The key-frame inference options (inference.py)."""
    group = parser.add_argument_group("TFVOS key-frame inference (docs/TFVOS.md)")
    group.add_argument("--key_frames", default=None,
                       help="run TFVOS key-frame inference with the key frame of every expression from 'model' (the "
                            "model's own whole-video pass, run first: the frame of the highest score), a JSON file "
                            "(the original c_key_frame_dict.json {video: {expression position: frame index}}, or the "
                            "ICCV-2023 key_frame.json) or a --save_logits folder (the frame of the highest score)")
    group.add_argument("--key_frame_masks", default=FROM_MODEL,
                       help="the key frame's mask: 'model' (the whole-video pass) or a folder in the benchmark's "
                            "output layout, e.g. Annotations/ with <video>/<exp_id>/<frame>.png (foreground 255)")
    group.add_argument("--tfvos_fixed_propagation", action="store_true",
                       help="also predict the key frame's two neighbours, prompted by the key frame (the original "
                            "skips them and keeps their initial masks: a quirk reproduced by default)")


def keyframe_mode(args) -> bool:
    return getattr(args, "key_frames", None) is not None


def keyframe_model_options(args, explicit: Set[str]) -> Set[str]:
    """Key-frame inference runs the TFVOS variant: ``--model tfvos`` unless ``--model`` was given (a checkpoint of
    ReferFormer's layout then loads into it; another variant is refused by ``KeyFrameEngine``). Returns the
    explicit options."""
    if keyframe_mode(args) and "model" not in explicit:
        args.model = "tfvos"
        return set(explicit) | {"model"}
    return set(explicit)


def propagation_frames(num_frames: int, key: int, skip_first_neighbour: bool) -> Tuple[List[int], List[int]]:
    """(forward, backward): the frames predicted from key frame ``key``, in the order they are predicted. The
    frames in neither keep their initial mask: the key frame, and with ``skip_first_neighbour`` (TFVOS QUIRK, see
    the module docstring) its neighbours too."""
    if not 0 <= key < num_frames:
        raise KeyFrameError(f"key frame {key} is outside the video's {num_frames} frames (0..{num_frames - 1})")
    forward, backward = list(range(key + 1, num_frames)), list(range(key - 1, -1, -1))
    if skip_first_neighbour:
        forward, backward = forward[1:], backward[1:]
    return forward, backward


# ------------------------------------------------------------------------------------------- key frames

def score_argmax(scores: np.ndarray, source: str) -> int:
    """The frame of the highest score, ties to the first (``np.argmax``); NaN scores (frames whose mask was
    given) are skipped."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0 or np.isnan(scores).all():
        raise KeyFrameError(f"{source}: no frame score to choose the key frame from")
    return int(np.nanargmax(scores))


class KeyFrameTable:
    """Key frames from a JSON file: the original TFVOS ``{video: {str(position): k}}`` (position = the
    expression's index in its video's meta, k = an index into the video's frames), or the ICCV-2023
    ``{video: {exp_id: {"index_info": {"class_index": k}}}}``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        data = read_json(self.path)
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise ValueError(f"{self.path}: expected {{video: {{expression: key frame index}}}}")
        self.videos = data
        self.by_exp_id = any(isinstance(value, dict) for entry in data.values() for value in entry.values())

    def key_frame(self, job: VideoJob, exp: int, frame_names: Sequence[str]) -> int:
        exp_id = job.expressions[exp].exp_id
        name = f"expression {exp_id} (position {exp}) of video {job.name}"
        entry = self.videos.get(job.name)
        if entry is None:
            raise KeyFrameError(f"{self.path} has no key frames for video {job.name}")
        value = entry.get(exp_id if self.by_exp_id else str(exp))
        if self.by_exp_id and isinstance(value, dict):
            value = value.get("index_info", {}).get("class_index")
        if value is None:
            raise KeyFrameError(f"{self.path} has no key frame for {name}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise KeyFrameError(f"{self.path}: the key frame of {name} is {value!r}, not a frame index")
        return value


class LogitsKeyFrames:
    """Key frames from a ``--save_logits`` folder: the frame of the highest ``frame_scores``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"--key_frames {self.root}: no such folder (nor a JSON file, nor 'model')")

    def key_frame(self, job: VideoJob, exp: int, frame_names: Sequence[str]) -> int:
        path = LogitsStore.path(self.root, job, exp)
        if not path.is_file():
            raise KeyFrameError(f"{path} not found: no --save_logits scores for expression "
                                f"{job.expressions[exp].exp_id} of video {job.name}")
        try:
            store = load_logits(path)
        except (OSError, ValueError, KeyError) as err:
            raise KeyFrameError(f"{path} cannot be read: {err}") from err
        if "frame_scores" not in store or "frames" not in store:
            raise KeyFrameError(f"{path} is not a --save_logits file (no frame_scores / frames)")
        if [str(f) for f in store["frames"]] != list(frame_names):
            raise KeyFrameError(f"{path}: its {len(store['frames'])} frames are not the video's {len(frame_names)}")
        return score_argmax(store["frame_scores"], str(path))


def key_frame_source(spec: str):
    """``--key_frames``: FROM_MODEL, a ``KeyFrameTable`` (JSON file) or ``LogitsKeyFrames`` (folder)."""
    if spec == FROM_MODEL:
        return FROM_MODEL
    path = Path(spec)
    return KeyFrameTable(path) if path.is_file() else LogitsKeyFrames(path)


# ------------------------------------------------------------------------------------------- initial masks

class WholeVideoOutputs:
    """The whole-video pass of a video, per expression and frame, reduced to what key-frame inference needs:
    class logits [Q, K], the chosen query and its stride-4 mask logits."""

    def __init__(self):
        self.frames: Dict[int, Dict[int, Tuple[torch.Tensor, int, torch.Tensor]]] = {}
        self.shape: Dict = {}

    def add(self, window: Window, exp: int, output: ExpressionOutput) -> None:
        """The engine's ``emit``: keep every frame of ``window``."""
        query = output.chosen_query()
        self.shape = dict(input_size=output.input_size, padded_size=output.padded_size, orig_size=output.orig_size)
        rows = self.frames.setdefault(exp, {})
        for i, position in enumerate(window.positions):
            rows[position] = (output.logits[i].cpu(), query, output.masks[i, query].cpu())

    def scores(self, exp: int, num_frames: int) -> np.ndarray:
        """[T] sigmoid score of the chosen query in each frame (what ``--save_logits`` stores)."""
        rows = self.frames[exp]
        return np.array([rows[t][0][rows[t][1]].sigmoid().max().item() for t in range(num_frames)], dtype=np.float32)

    def frame(self, exp: int, position: int) -> ExpressionOutput:
        """The output of one frame (its window's chosen query), as the whole-video pass would write it."""
        logits, query, mask = self.frames[exp][position]
        masks = mask[None, None].expand(1, logits.shape[0], -1, -1)  # only the chosen query's row is read
        return ExpressionOutput(logits[None], masks, query=query, **self.shape)


@dataclass
class GivenMask:
    """A frame whose mask was given (read from a folder): the outputs' interface with probability 0 or 1, an
    unknown score (NaN) and no query (-1).

    mask: [H0, W0] bool at the original size; input_size: (h, w) of the resized frame.
    """

    mask: torch.Tensor
    input_size: Tuple[int, int]

    @property
    def orig_size(self) -> Tuple[int, int]:
        return tuple(self.mask.shape)

    def probabilities(self) -> torch.Tensor:
        return self.mask.float()[None]

    def binary_masks(self, threshold: float) -> np.ndarray:
        """bool [1, H0, W0]: the given mask where 1 > ``threshold`` (as ``ExpressionOutput.binary_masks``)."""
        return (self.probabilities() > threshold).cpu().numpy()

    def soft_masks(self) -> torch.Tensor:
        """[1, ceil(h / 4), ceil(w / 4)]: the mask's area average at stride 4 of the resized frame."""
        size = tuple(math.ceil(s / 4) for s in self.input_size)
        return F.interpolate(self.mask.float()[None, None], size=size, mode="area")[0]

    def frame_scores(self) -> torch.Tensor:
        return torch.full((1,), float("nan"))

    def chosen_query(self) -> int:
        return -1


# ------------------------------------------------------------------------------------------- propagation

@dataclass
class Track:
    """The propagation of one expression: the frames predicted forward and backward (in order) from ``key``,
    whose mask ``key_mask`` [H0, W0] bool starts both directions."""

    exp: int
    text: str
    key: int
    forward: List[int]
    backward: List[int]
    key_mask: np.ndarray


class Propagator:
    """Runs a TFVOS model one frame at a time along the tracks of one video (see the module docstring).

    short_side / max_size: the resize of the prompts (the frames come resized in the ``LoadedVideo``);
    threshold: binarises each step's mask for the next prompt; size_divisibility: padding of the inputs;
    per_expression / decode_batch / autocast: as ``InferenceEngine``.
    """

    def __init__(self, model: torch.nn.Module, device, short_side: int, max_size: Optional[int], threshold: float,
                 size_divisibility: int = 1, per_expression: bool = False, decode_batch: int = 1,
                 autocast: Callable = contextlib.nullcontext):
        if not isinstance(model, TFVOS):
            raise ValueError(f"key-frame inference needs the TFVOS model (--model tfvos), got {type(model).__name__}; "
                             "a ReferFormer checkpoint loads into it too (docs/TFVOS.md)")
        self.model = model
        self.device = torch.device(device)
        self.short_side, self.max_size, self.threshold = short_side, max_size, threshold
        self.size_divisibility = size_divisibility
        self.per_expression = per_expression
        self.decode_batch = decode_batch
        self.autocast = autocast

    def run(self, video: LoadedVideo, tracks: Sequence[Track], emit: Callable[[Track, int, ExpressionOutput], None],
            order: Callable[[Sequence[int]], List[int]] = list, stop: Stop = never_stop) -> Set[int]:
        """Predict every frame of every track in order, handing each output to ``emit(track, position, output)``.

        ``stop`` (as ``InferenceEngine.run``) is asked after each track (``per_expression``) or each decode chunk
        (shared: the tracks it names then go on alone through both directions). Returns the expressions of the
        tracks left unfinished."""
        every = {track.exp for track in tracks}
        if self.per_expression:
            finished: Set[int] = set()
            to_finish: Optional[Set[int]] = None
            for track in tracks:
                if to_finish is not None and track.exp not in to_finish:
                    continue
                for direction in DIRECTIONS:
                    self._run_alone(video, track, getattr(track, direction), emit)
                finished.add(track.exp)
                if to_finish is None and len(finished) < len(tracks):
                    to_finish = stop(finished, set())
            return every - finished
        texts: Dict[Tuple[int, ...], object] = {}
        going = every
        for direction in DIRECTIONS:
            going = self._run_together(video, [t for t in tracks if t.exp in going], direction, emit, order, texts,
                                       stop if going == every else never_stop)
        return every - going

    # ---------------------------------------------------------------- inputs
    def _frame_input(self, video: LoadedVideo, position: int) -> Tuple[NestedTensor, Dict, torch.Tensor]:
        clip = normalize_frames(video.clip([position]).to(self.device))
        samples = nested_tensor_from_videos_list([clip], size_divisibility=self.size_divisibility)
        input_size = tuple(clip.shape[-2:])
        shape = dict(input_size=input_size, padded_size=tuple(samples.tensors.shape[-2:]), orig_size=video.orig_size)
        return samples, shape, torch.tensor(input_size, device=self.device)

    def _prompts(self, video: LoadedVideo, prompts: Sequence[Tuple[int, np.ndarray]]) -> NestedTensor:
        """Prompt clips [B, 1, 3, h, w]: frame ``position`` masked by ``mask`` at the original size, then resized
        as the frames (the original masks before its ``T.Resize``)."""
        clips = []
        for position, mask in prompts:
            image = masked_frame(Image.fromarray(video.original(position)), mask)
            clips.append(normalize_frames(frame_tensor(image, self.short_side, self.max_size)[None].to(self.device)))
        return nested_tensor_from_videos_list(clips, size_divisibility=self.size_divisibility)

    def _mask(self, output: ExpressionOutput) -> np.ndarray:
        return (output.probabilities()[0] > self.threshold).cpu().numpy()

    # ---------------------------------------------------------------- modes
    def _run_alone(self, video: LoadedVideo, track: Track, positions: Sequence[int], emit) -> None:
        """The original: the whole model per step (``model([img], [pre_img], [exp], [target])``)."""
        last = (track.key, track.key_mask)
        for position in positions:
            samples, shape, size = self._frame_input(video, position)
            with self.autocast():
                out = self.model(samples, [track.text], [{"size": size}], prompts=self._prompts(video, [last]))
            output = ExpressionOutput(out["pred_logits"][0].float(), out["pred_masks"][0].float(), **shape)
            last = (position, self._mask(output))
            emit(track, position, output)

    def _run_together(self, video: LoadedVideo, tracks: Sequence[Track], direction: str, emit, order,
                      texts: Dict, stop: Stop) -> Set[int]:
        """One direction for all tracks: frame by frame, the frame's backbone once for every track stepping on it;
        ``texts`` caches the text encodings by tuple of expressions. Returns the expressions that went through the
        whole direction: all, or those ``stop`` named (nothing is finished before the last direction, so it is
        asked with an empty ``finished``)."""
        by_exp = {track.exp: track for track in tracks}
        steps = {track.exp: set(getattr(track, direction)) for track in tracks}
        last = {track.exp: (track.key, track.key_mask) for track in tracks}
        going = set(by_exp)
        stopped = False
        positions = range(video.num_frames) if direction == "forward" else range(video.num_frames - 1, -1, -1)
        for position in positions:
            pending = order([exp for exp in by_exp if exp in going and position in steps[exp]])
            if not pending:
                continue
            samples, shape, size = self._frame_input(video, position)
            with self.autocast():
                visual = self.model.encode_video(samples)
            batch = self.decode_batch if self.decode_batch > 0 else len(pending)
            while pending:
                chunk, pending = tuple(pending[:batch]), pending[batch:]
                if chunk not in texts:
                    with self.autocast():
                        texts[chunk] = self.model.encode_text([by_exp[exp].text for exp in chunk])
                features = visual if len(chunk) == 1 else visual.repeat_videos([len(chunk)])
                with self.autocast():
                    prompt = self.model.encode_video(self._prompts(video, [last[exp] for exp in chunk]))
                    out = self.model.decode(features, texts[chunk], size[None].repeat(len(chunk), 1), prompt=prompt)
                for i, exp in enumerate(chunk):
                    output = ExpressionOutput(out["pred_logits"][i].float(), out["pred_masks"][i].float(), **shape)
                    last[exp] = (position, self._mask(output))
                    emit(by_exp[exp], position, output)
                if not stopped:
                    answer = stop(set(), set(chunk))
                    if answer is not None:
                        stopped = True
                        going = (answer | set(chunk)) & going
                        pending = [exp for exp in pending if exp in going]
        return going


# ------------------------------------------------------------------------------------------- the engine

class KeyFrameEngine:
    """The key-frame inference engine behind ``InferenceRunner`` (same ``run`` interface as ``InferenceEngine``,
    which it uses for the whole-video pass).

    key_frames: ``--key_frames``; key_frame_masks: ``--key_frame_masks``; skip_first_neighbour: the TFVOS QUIRK
    (default True); short_side / max_size: the frames' resize (for the prompts).
    """

    needs_original_frames = True

    def __init__(self, engine: InferenceEngine, benchmark: Benchmark, key_frames: str, key_frame_masks: str,
                 short_side: int, max_size: Optional[int], threshold: float, skip_first_neighbour: bool = True):
        if type(benchmark).given_mask_path is Benchmark.given_mask_path:
            raise ValueError(f"key-frame inference writes per-frame masks of whole videos (ytvos, mevis, davis, "
                             f"--video); {benchmark.name} evaluates one annotated frame per sample")
        self.engine = engine
        self.benchmark = benchmark
        self.source = key_frame_source(key_frames)
        self.masks_root = None if key_frame_masks == FROM_MODEL else Path(key_frame_masks)
        if self.masks_root is not None and not self.masks_root.is_dir():
            raise FileNotFoundError(f"--key_frame_masks {self.masks_root}: no such folder")
        self.skip_first_neighbour = skip_first_neighbour
        self.threshold = threshold
        self.propagator = Propagator(engine.model, engine.device, short_side, max_size, threshold,
                                     size_divisibility=engine.size_divisibility, per_expression=engine.per_expression,
                                     decode_batch=engine.decode_batch, autocast=engine.autocast)
        logger.info("TFVOS key-frame inference: key frames from %s, key-frame masks from %s, %s", key_frames,
                    key_frame_masks, "first neighbours skipped (as the original)" if skip_first_neighbour
                    else "first neighbours predicted (--tfvos_fixed_propagation)")

    @classmethod
    def from_args(cls, args, engine: InferenceEngine, benchmark: Benchmark, short_side: int,
                  max_size: Optional[int]) -> "KeyFrameEngine":
        return cls(engine, benchmark, args.key_frames, args.key_frame_masks, short_side, max_size, args.threshold,
                   skip_first_neighbour=not args.tfvos_fixed_propagation)

    @property
    def needs_whole_video_pass(self) -> bool:
        return self.source == FROM_MODEL or self.masks_root is None

    @torch.inference_mode()
    def run(self, job: VideoJob, video: LoadedVideo, needed: Set[int], emit: Emit,
            order: Callable[[Sequence[int]], List[int]] = list,
            progress: Callable[[int], None] = lambda n: None, stop: Stop = never_stop) -> RunOutcome:
        """Key-frame inference of the ``needed`` expressions of one video; every frame's output goes to ``emit``
        as a 1-frame window. Returns the expressions that failed on their own, with the reason, and those a
        ``stop`` left unfinished (it is asked during the whole-video pass and the propagation)."""
        expressions = order(sorted(needed))
        failed: Dict[int, str] = {}
        keys = self._listed_key_frames(job, video, expressions, failed)
        whole = None
        unfinished: Set[int] = set()
        if self.needs_whole_video_pass:
            whole = WholeVideoOutputs()
            # nothing is finished before its propagation: the whole-video pass asks ``stop`` with an empty set
            unfinished = self.engine.run(job, video, {e for e in expressions if e not in failed}, whole.add,
                                         order=order,
                                         stop=lambda done, in_flight: stop(set(), done | in_flight)).unfinished
            if self.source == FROM_MODEL:
                keys = {e: score_argmax(whole.scores(e, video.num_frames), f"video {job.name}")
                        for e in expressions if e not in failed and e not in unfinished}
        tracks, given = [], {}
        for exp in expressions:
            if exp in failed or exp in unfinished:
                continue
            try:
                track, given[exp] = self._track(job, video, exp, keys[exp], whole)
                tracks.append(track)
            except KeyFrameError as err:
                failed[exp] = f"{err} (expression {job.expressions[exp].exp_id} of video {job.name})"
        for exp in failed:
            progress(video.num_frames)

        def emit_frame(exp: int, position: int, output) -> None:
            emit(Window([position], [exp]), exp, output)
            progress(1)

        for exp, outputs in given.items():
            for position, output in outputs.items():
                emit_frame(exp, position, output)
        unfinished |= self.propagator.run(video, tracks,
                                          lambda track, position, output: emit_frame(track.exp, position, output),
                                          order, stop)
        return RunOutcome(failed=failed, unfinished=unfinished)

    def _listed_key_frames(self, job: VideoJob, video: LoadedVideo, expressions: Sequence[int],
                           failed: Dict[int, str]) -> Dict[int, int]:
        """The key frames a JSON file or a logits folder gives ({} for ``model``); failures go to ``failed``."""
        keys = {}
        if self.source == FROM_MODEL:
            return keys
        for exp in expressions:
            try:
                keys[exp] = self.source.key_frame(job, exp, video.frame_names)
            except KeyFrameError as err:
                failed[exp] = str(err)
        return keys

    def _track(self, job: VideoJob, video: LoadedVideo, exp: int, key: int, whole: Optional[WholeVideoOutputs]):
        """The expression's ``Track`` and the outputs of the frames that keep their given mask."""
        forward, backward = propagation_frames(video.num_frames, key, self.skip_first_neighbour)
        kept = sorted(set(range(video.num_frames)) - set(forward) - set(backward))
        outputs = {position: self._given(job, video, exp, position, whole) for position in kept}
        key_mask = (outputs[key].probabilities()[0] > self.threshold).cpu().numpy()
        return Track(exp, job.expressions[exp].text, key, forward, backward, key_mask), outputs

    def _given(self, job: VideoJob, video: LoadedVideo, exp: int, position: int, whole: Optional[WholeVideoOutputs]):
        """The initial output of a frame: the whole-video pass's, or the mask read from ``--key_frame_masks``."""
        if self.masks_root is None:
            return whole.frame(exp, position)
        path = self.benchmark.given_mask_path(self.masks_root, job, exp, position, video.frame_names[position])
        try:
            mask = self.benchmark.given_mask(read_label_map(path), exp)
        except (OSError, ValueError) as err:
            raise KeyFrameError(f"initial mask: {err}") from err
        if mask.shape != tuple(video.orig_size):
            raise KeyFrameError(f"initial mask {path} is {mask.shape[1]}x{mask.shape[0]} (WxH) but the video's frames "
                                f"are {video.orig_size[1]}x{video.orig_size[0]}")
        return GivenMask(torch.from_numpy(mask), tuple(video.frames.shape[-2:]))


# ------------------------------------------------------------------------------------------- outside inference.py

def propagate(model: TFVOS, frames: Sequence, key_index: int, key_mask, text: str, *, device="cpu",
              short_side: int = DEFAULT_SHORT_SIDE, max_size: Optional[int] = None, threshold: float = 0.5,
              skip_first_neighbour: bool = False, initial_masks=None, amp: Optional[str] = None) -> torch.Tensor:
    """Propagate one expression's mask from a key frame through a video with a TFVOS model (in eval mode).

    frames: T RGB frames of one size (PIL images or uint8 arrays [H0, W0, 3]); key_index: the key frame;
    key_mask: its mask [H0, W0] (bool or 0/1); text: the expression. The frames are resized to ``short_side``
    (long side <= ``max_size``) as inference does. ``skip_first_neighbour`` reproduces the original's skipped
    neighbours (TFVOS QUIRK), whose masks then come from ``initial_masks`` [T, H0, W0]; amp: None, 'fp16', 'bf16'.

    Returns float32 [T, H0, W0] on the CPU: each predicted frame's foreground probability (the query chosen per
    frame), and the given masks as 0 / 1 (the key frame, and the skipped neighbours).
    """
    if model.training:
        raise ValueError("propagate needs the model in eval mode (model.eval())")
    images = [frame.convert("RGB") if isinstance(frame, Image.Image) else Image.fromarray(np.asarray(frame, np.uint8))
              for frame in frames]
    if not images:
        raise ValueError("propagate needs at least one frame")
    orig_size = (images[0].height, images[0].width)
    for i, image in enumerate(images):
        if (image.height, image.width) != orig_size:
            raise ValueError(f"frame {i} is {image.width}x{image.height} but frame 0 is {orig_size[1]}x{orig_size[0]}")
    key_mask = np.asarray(key_mask).astype(bool)
    if key_mask.shape != orig_size:
        raise ValueError(f"key_mask is {key_mask.shape[::-1]} (WxH) but the frames are {orig_size[::-1]}")
    forward, backward = propagation_frames(len(images), key_index, skip_first_neighbour)
    video = LoadedVideo(torch.stack([frame_tensor(image, short_side, max_size) for image in images]),
                        {i: i for i in range(len(images))}, orig_size, [f"{i:05d}" for i in range(len(images))],
                        WindowPlan([]), [np.asarray(image) for image in images])
    result = torch.zeros(len(images), *orig_size)
    result[key_index] = torch.from_numpy(key_mask).float()
    for position in sorted(set(range(len(images))) - set(forward) - set(backward) - {key_index}):
        if initial_masks is None:
            raise ValueError("skip_first_neighbour keeps the key frame's neighbours' initial masks: pass initial_masks")
        result[position] = torch.as_tensor(np.asarray(initial_masks[position]).astype(bool)).float()
    dtype = AMP_DTYPES[amp] if amp else None
    autocast = partial(torch.autocast, torch.device(device).type, dtype=dtype, enabled=dtype is not None)
    propagator = Propagator(model, device, short_side, max_size, threshold, autocast=autocast)

    def keep(track: Track, position: int, output: ExpressionOutput) -> None:
        result[position] = output.probabilities()[0].float().cpu()

    with torch.inference_mode():
        propagator.run(video, [Track(0, text, key_index, forward, backward, key_mask)], keep)
    return result
