"""The one inference engine: run a model over the windows of a video for its expressions.

Shared mode (default): per window, the text-independent visual backbone runs once
(``model.encode_video``); the expressions are decoded on its features, ``decode_batch`` at a time
(``model.encode_text`` once per video and chunk of expressions, ``VisualFeatures.repeat_videos``,
``model.decode``). ``per_expression`` runs the full model per expression as the original scripts
do (``model(samples, [caption], [target])``).

A video model (a ``segment_video`` method: DsHmp) fuses the language inside its backbone, so nothing visual can be
shared between expressions: per expression it runs the whole window in chunks and its outputs come back per chunk
of frames (memory bounded by the chunk); the decoded and resized frames are what the expressions share.

With ``decode_batch`` 1 the two modes run the same operations on tensors of the same shapes and give
bit-identical outputs. Decoding several expressions in one batch is faster on a GPU but changes the
floating-point rounding (matrix kernels depend on the batch size; captions are padded to the longest),
so mask logits then differ by about 1e-5 and a pixel whose probability is that close to the threshold
can flip.

Stopping early (a preemption signal, see ``Stop``): the full model per expression runs expression after expression,
so a stop ends the video after the expression in flight. Shared mode runs window after window; a stop ends it once
the decode chunk in flight (``decode_batch`` expressions, one by default) has been carried through the video's
remaining windows, alone. ``stop`` may add expressions to finish first (the rest of a DAVIS annotator's sequence).
Expressions left are reported in ``RunOutcome.unfinished``: their partial outputs are not committed, and a rerun
computes them.
"""
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch

from rvos.predict.base import VideoJob, Window, WindowPlan
from rvos.predict.postprocess import ExpressionOutput, best_video_query
from rvos.util.misc import nested_tensor_from_videos_list


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
STANDARD_OUTPUTS = ("pred_logits", "pred_masks", "pred_boxes", "reference_points")

Emit = Callable[[Window, int, ExpressionOutput], None]


@dataclass
class LoadedVideo:
    """Decoded, resized frames of one video.

    frames: uint8 [N, 3, h, w] for the positions in ``rows`` (position in the video -> row);
    orig_size: (H0, W0) of the original frames; frame_names: output name of every frame of the video;
    originals: when loaded with ``keep_original`` (key-frame inference), the original frames, uint8 [H0, W0, 3]
    per row.
    """

    frames: torch.Tensor
    rows: Dict[int, int]
    orig_size: Tuple[int, int]
    frame_names: List[str]
    plan: WindowPlan
    originals: Optional[List[np.ndarray]] = None

    @property
    def num_frames(self) -> int:
        return len(self.frame_names)

    def clip(self, positions: Sequence[int]) -> torch.Tensor:
        """uint8 [t, 3, h, w] of the frames at ``positions``."""
        return self.frames[[self.rows[p] for p in positions]]

    def original(self, position: int) -> np.ndarray:
        """uint8 [H0, W0, 3] original frame at ``position`` (needs ``keep_original`` when loading)."""
        if self.originals is None:
            raise RuntimeError("the original frames were not kept (load_video(..., keep_original=True))")
        return self.originals[self.rows[position]]


def normalize_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [t, 3, h, w] -> float [t, 3, h, w], exactly ``T.ToTensor()`` (x / 255) then ``T.Normalize`` with
    the ImageNet mean and std (the original inference transform), on the tensor's device."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=frames.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=frames.device)[:, None, None]
    return frames.to(torch.float32).div(255).sub_(mean).div_(std)


class NormalizedFrames:
    """The frames of a window normalised on demand (``frames[start:end]`` -> float [t, 3, h, w] on ``device``), so a
    chunked model holds one chunk of float frames at a time."""

    def __init__(self, video: LoadedVideo, positions: Sequence[int], device: torch.device):
        self.video = video
        self.positions = list(positions)
        self.device = device

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: slice) -> torch.Tensor:
        return normalize_frames(self.video.clip(self.positions[index]).to(self.device, non_blocking=True))


Stop = Callable[[Set[int], Set[int]], Optional[Set[int]]]
"""``stop(finished, in_flight)``, asked by ``run`` between expressions (or decode chunks) with the expressions
finished so far and those in flight: None to go on, or the expressions to finish before the video ends (the runner
answers after a preemption signal, adding the other expressions of the output units those belong to)."""


def never_stop(finished: Set[int], in_flight: Set[int]) -> Optional[Set[int]]:
    return None


@dataclass
class RunOutcome:
    """What ``run`` of a video did not produce: ``failed`` expressions (index -> reason; e.g. a missing key frame) and
    ``unfinished`` ones (left when ``stop`` ended the video; their outputs so far must not be committed)."""

    failed: Dict[int, str] = field(default_factory=dict)
    unfinished: Set[int] = field(default_factory=set)


class Delivery:
    """Hands outputs to ``emit`` and counts them in ``progress``: at once, or, for contiguous sub-videos
    (``plan.video_query``), held until the expression is complete so that one query is chosen for the whole
    video (``engine.rescore_video`` when the model has it, else the windows' scores averaged)."""

    def __init__(self, engine: "InferenceEngine", video: LoadedVideo, emit: Emit, progress: Callable[[int], None]):
        self.engine = engine
        self.num_frames = video.num_frames
        self.hold = video.plan.video_query
        self.emit = emit
        self.progress = progress
        self.held: Dict[int, List[Tuple[Window, ExpressionOutput]]] = {}

    def add(self, window: Window, exp: int, output: ExpressionOutput) -> None:
        if self.hold:
            self.held.setdefault(exp, []).append((window, output.to("cpu")))
            return
        self.emit(window, exp, output)
        self.progress(len(window.positions))

    def complete(self, exp: int) -> None:
        """Every window of ``exp`` was added: emit what was held for it."""
        held = self.held.pop(exp, [])
        if not held:
            return
        outputs = [output for _, output in held]
        if self.engine.rescore_video is not None:
            query = int(self.engine.rescore_video(outputs, self.num_frames))
        else:
            query = best_video_query([output.logits for output in outputs])
        for window, output in held:
            output.query = query
            self.emit(window, exp, output.to(self.engine.device))
            self.progress(len(window.positions))


class InferenceEngine:
    """Runs ``model`` (eval mode, on ``device``) over the windows of videos.

    per_expression: the full model per expression; decode_batch: expressions per decode call in shared
    mode (0 = all of a window's expressions at once); amp: None, 'fp16' or 'bf16' (autocast);
    size_divisibility: the padding of the model input; multi_object: the benchmark's expressions may refer to
    zero or several objects (MeViS), which a model with ``segment_video`` then outputs.

    Contiguous sub-videos choose one query per expression for the whole video: by default from the
    per-frame scores of all windows averaged together (ReferFormer has no re-scoring); a model with a
    ``rescore_video(outputs: List[ExpressionOutput], num_frames: int) -> int`` method (the MUTR variant's
    long-term MTI re-scoring, the MeViS-2024 ``inference_long_term``) chooses it instead, from every
    window's outputs including the ``extras`` its ``decode`` returns.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device, per_expression: bool = False,
                 decode_batch: int = 1, amp: Optional[str] = None, size_divisibility: int = 1,
                 multi_object: bool = False):
        self.model = model
        self.multi_object = multi_object
        self.segment_video = getattr(model, "segment_video", None)
        self.device = torch.device(device)
        self.per_expression = per_expression
        self.decode_batch = decode_batch
        self.amp_dtype = AMP_DTYPES[amp] if amp else None
        self.size_divisibility = max(size_divisibility, getattr(model, "input_size_divisibility", 1))
        self.rescore_video = getattr(model, "rescore_video", None)

    def autocast(self):
        """The autocast context of ``amp`` (disabled without it)."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    @torch.inference_mode()
    def run(self, job: VideoJob, video: LoadedVideo, needed: Set[int], emit: Emit,
            order: Callable[[Sequence[int]], List[int]] = list, progress: Callable[[int], None] = lambda n: None,
            stop: Stop = never_stop) -> RunOutcome:
        """Compute the outputs of the ``needed`` expressions (indices into ``job.expressions``) on every
        window of ``video.plan`` and hand each ``(window, expression, ExpressionOutput)`` to ``emit``;
        ``order`` sorts expressions (e.g. DAVIS annotator by annotator); ``progress`` gets the frames x
        expressions done; ``stop`` (see ``Stop``) may end the video early, after the expressions in flight.

        The full model per expression (``per_expression``, video models) runs expression after expression;
        shared mode runs window after window (a window's visual features serve all its expressions)."""
        delivery = Delivery(self, video, emit, progress)
        if self.per_expression or self.segment_video is not None:
            return self._run_by_expression(job, video, needed, delivery, order, stop)
        return self._run_by_window(job, video, needed, delivery, order, stop)

    def _run_by_expression(self, job: VideoJob, video: LoadedVideo, needed: Set[int], delivery: Delivery,
                           order, stop: Stop) -> RunOutcome:
        """Each expression over all its windows before the next; ``stop`` is asked after each expression."""
        expressions = order(sorted(needed))
        finished: Set[int] = set()
        to_finish: Optional[Set[int]] = None
        for exp in expressions:
            if to_finish is not None and exp not in to_finish:
                continue
            for window in video.plan.windows:
                if exp in window.expressions:
                    for part, output in self._expression_outputs(job, video, window, exp):
                        delivery.add(part, exp, output)
            delivery.complete(exp)
            finished.add(exp)
            if to_finish is None and len(finished) < len(expressions):
                to_finish = stop(finished, set())
        return RunOutcome(unfinished=set(expressions) - finished)

    def _run_by_window(self, job: VideoJob, video: LoadedVideo, needed: Set[int], delivery: Delivery, order,
                       stop: Stop) -> RunOutcome:
        """Window after window; ``stop`` is asked after each decode chunk. Once it names what to finish, those
        expressions alone go on through the rest of this window and the remaining windows (each encoded once more
        for them), and the others are left unfinished."""
        windows_left = Counter(e for window in video.plan.windows for e in window.expressions if e in needed)
        finished = {e for e in needed if windows_left[e] == 0}
        to_finish: Optional[Set[int]] = None
        texts: Dict[Tuple[int, ...], object] = {}
        for window in video.plan.windows:
            pending = order([e for e in window.expressions if e in needed and (to_finish is None or e in to_finish)])
            if not pending:
                continue
            visual, shape, size = self._encode_window(video, window)
            batch = self.decode_batch if self.decode_batch > 0 else len(pending)
            while pending:
                chunk, pending = tuple(pending[:batch]), pending[batch:]
                for exp, output in self._decode_chunk(job, visual, chunk, texts, shape, size):
                    delivery.add(window, exp, output)
                    windows_left[exp] -= 1
                    if windows_left[exp] == 0:
                        delivery.complete(exp)
                        finished.add(exp)
                if to_finish is None and len(finished) < len(needed):
                    to_finish = stop(finished, set(chunk))
                    if to_finish is not None:
                        to_finish = (to_finish | set(chunk)) & set(needed)
                        pending = [e for e in pending if e in to_finish]
        return RunOutcome(unfinished=set(needed) - finished)

    def _expression_outputs(self, job: VideoJob, video: LoadedVideo, window: Window, exp: int
                            ) -> Iterator[Tuple[Window, ExpressionOutput]]:
        """(window or a part of its frames, outputs) of the full model for one expression."""
        if self.segment_video is not None:
            yield from self._video_model_outputs(job, video, window, exp)
            return
        samples, shape, size = self._window_input(video, window)
        target = {"size": size}
        if window.keep is not None:
            target["valid_indices"] = torch.tensor([window.keep], device=self.device)
        with self.autocast():
            out = self.model(samples, [job.expressions[exp].text], [target])
        yield window, self._expression_output(out, 0, shape)

    def _window_input(self, video: LoadedVideo, window: Window):
        """The padded model input of a window, the output sizes and the [2] (h, w) size tensor."""
        clip = normalize_frames(video.clip(window.positions).to(self.device, non_blocking=True))
        samples = nested_tensor_from_videos_list([clip], size_divisibility=self.size_divisibility)
        input_size = tuple(clip.shape[-2:])
        shape = dict(input_size=input_size, padded_size=tuple(samples.tensors.shape[-2:]),
                     orig_size=video.orig_size)
        return samples, shape, torch.tensor(input_size, device=self.device)

    def _video_model_outputs(self, job: VideoJob, video: LoadedVideo, window: Window, exp: int
                             ) -> Iterator[Tuple[Window, ExpressionOutput]]:
        """A video model for one expression: its outputs per chunk of frames (``segment_video``, e.g. DsHmp)."""
        if window.keep is not None:
            raise ValueError(f"{type(self.model).__name__} segments whole windows; benchmarks that decode one annotated "
                             f"frame of a window (A2D-Sentences, JHMDB-Sentences) are not supported with it")
        clip = NormalizedFrames(video, window.positions, self.device)
        divisor = self.size_divisibility
        input_size = tuple(video.frames.shape[-2:])
        shape = dict(input_size=input_size, padded_size=tuple(-(-s // divisor) * divisor for s in input_size),
                     orig_size=video.orig_size)
        with self.autocast():
            chunks = self.segment_video(clip, job.expressions[exp].text, self.multi_object)
            for start, end, out in chunks:
                logits = out["fg_logits"].float()[None, :, None].expand(end - start, -1, -1)
                union = tuple(int(q) for q in out["kept"]) if self.multi_object else None
                output = ExpressionOutput(logits, out["masks"].float(), query=int(out["top"]), union=union,
                                          via_padded=True, **shape)
                yield Window(window.positions[start:end], window.expressions, window.keep), output

    def _encode_window(self, video: LoadedVideo, window: Window):
        """The window's text-independent visual features (its annotated frame only when ``window.keep``), the output
        sizes and the [2] (h, w) size tensor."""
        samples, shape, size = self._window_input(video, window)
        with self.autocast():
            visual = self.model.encode_video(samples)
        if window.keep is not None:
            visual = visual.select_frames(torch.tensor([window.keep], device=self.device))
        return visual, shape, size

    def _decode_chunk(self, job: VideoJob, visual, chunk: Tuple[int, ...], texts: Dict, shape: Dict,
                      size: torch.Tensor) -> List[Tuple[int, ExpressionOutput]]:
        """(expression, outputs) of the expressions of ``chunk`` decoded together on ``visual``; ``texts`` caches
        the text encodings by tuple of expressions."""
        if chunk not in texts:
            with self.autocast():
                texts[chunk] = self.model.encode_text([job.expressions[e].text for e in chunk])
        features = visual if len(chunk) == 1 else visual.repeat_videos([len(chunk)])
        with self.autocast():
            out = self.model.decode(features, texts[chunk], size[None].repeat(len(chunk), 1))
        return [(exp, self._expression_output(out, i, shape)) for i, exp in enumerate(chunk)]

    def _expression_output(self, out: Dict, index: int, shape: Dict) -> ExpressionOutput:
        """Row ``index`` of a decode output. With a ``rescore_video`` hook, the other per-expression tensors
        of the output (e.g. MUTR's frame queries) are kept in ``extras`` for it."""
        extras = {}
        if self.rescore_video is not None:
            batch = out["pred_logits"].shape[0]
            extras = {k: v[index] for k, v in out.items() if k not in STANDARD_OUTPUTS
                      and isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == batch}
        return ExpressionOutput(out["pred_logits"][index].float(), out["pred_masks"][index].float(), extras=extras,
                                **shape)
