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
"""
from dataclasses import dataclass
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
            order: Callable[[Sequence[int]], List[int]] = list, progress: Callable[[int], None] = lambda n: None):
        """Compute the outputs of the ``needed`` expressions (indices into ``job.expressions``) on every
        window of ``video.plan`` and hand each ``(window, expression, ExpressionOutput)`` to ``emit``;
        ``order`` sorts a window's expressions (e.g. DAVIS annotator by annotator); ``progress`` gets the
        frames x expressions done."""
        texts: Dict[Tuple[int, ...], object] = {}
        held: List[Tuple[Window, int, ExpressionOutput]] = []
        for window in video.plan.windows:
            expressions = order([e for e in window.expressions if e in needed])
            if not expressions:
                continue
            for part, exp, output in self._window_outputs(job, video, window, expressions, texts):
                if video.plan.video_query:
                    held.append((part, exp, output.to("cpu")))
                else:
                    emit(part, exp, output)
                    progress(len(part.positions))
        if held:
            self._emit_with_video_queries(held, video.num_frames, emit, progress)

    def _emit_with_video_queries(self, held, num_frames: int, emit: Emit, progress):
        """Contiguous sub-videos: one query per expression for the whole video, then emit every window."""
        by_expression: Dict[int, List[ExpressionOutput]] = {}
        for _, exp, output in held:
            by_expression.setdefault(exp, []).append(output)
        queries = {}
        for exp, outputs in by_expression.items():
            if self.rescore_video is not None:
                queries[exp] = int(self.rescore_video(outputs, num_frames))
            else:
                queries[exp] = best_video_query([o.logits for o in outputs])
        for window, exp, output in held:
            output.query = queries[exp]
            emit(window, exp, output.to(self.device))
            progress(len(window.positions))

    def _window_outputs(self, job: VideoJob, video: LoadedVideo, window: Window, expressions: List[int],
                        texts: Dict) -> Iterator[Tuple[Window, int, ExpressionOutput]]:
        """(window or a part of its frames, expression, outputs) for every expression of the window."""
        if self.segment_video is not None:
            yield from self._video_model_outputs(job, video, window, expressions)
            return
        for exp, output in self._shared_outputs(job, video, window, expressions, texts):
            yield window, exp, output

    def _video_model_outputs(self, job: VideoJob, video: LoadedVideo, window: Window, expressions: List[int]
                             ) -> Iterator[Tuple[Window, int, ExpressionOutput]]:
        """A video model per expression: its outputs per chunk of frames (``segment_video``, e.g. DsHmp)."""
        if window.keep is not None:
            raise ValueError(f"{type(self.model).__name__} segments whole windows; benchmarks that decode one annotated "
                             f"frame of a window (A2D-Sentences, JHMDB-Sentences) are not supported with it")
        clip = NormalizedFrames(video, window.positions, self.device)
        divisor = self.size_divisibility
        input_size = tuple(video.frames.shape[-2:])
        shape = dict(input_size=input_size, padded_size=tuple(-(-s // divisor) * divisor for s in input_size),
                     orig_size=video.orig_size)
        for exp in expressions:
            with self.autocast():
                chunks = self.segment_video(clip, job.expressions[exp].text, self.multi_object)
                for start, end, out in chunks:
                    logits = out["fg_logits"].float()[None, :, None].expand(end - start, -1, -1)
                    union = tuple(int(q) for q in out["kept"]) if self.multi_object else None
                    output = ExpressionOutput(logits, out["masks"].float(), query=int(out["top"]), union=union,
                                              via_padded=True, **shape)
                    yield Window(window.positions[start:end], window.expressions, window.keep), exp, output

    def _shared_outputs(self, job: VideoJob, video: LoadedVideo, window: Window, expressions: List[int],
                        texts: Dict) -> Iterator[Tuple[int, ExpressionOutput]]:
        clip = normalize_frames(video.clip(window.positions).to(self.device, non_blocking=True))
        samples = nested_tensor_from_videos_list([clip], size_divisibility=self.size_divisibility)
        input_size = tuple(clip.shape[-2:])
        shape = dict(input_size=input_size, padded_size=tuple(samples.tensors.shape[-2:]),
                     orig_size=video.orig_size)
        size = torch.tensor(input_size, device=self.device)
        captions = [job.expressions[e].text for e in expressions]
        if self.per_expression:
            for exp, caption in zip(expressions, captions):
                target = {"size": size}
                if window.keep is not None:
                    target["valid_indices"] = torch.tensor([window.keep], device=self.device)
                with self.autocast():
                    out = self.model(samples, [caption], [target])
                yield exp, self._expression_output(out, 0, shape)
            return
        with self.autocast():
            visual = self.model.encode_video(samples)
        if window.keep is not None:
            visual = visual.select_frames(torch.tensor([window.keep], device=self.device))
        batch = self.decode_batch if self.decode_batch > 0 else len(expressions)
        for start in range(0, len(expressions), batch):
            chunk = tuple(expressions[start:start + batch])
            if chunk not in texts:
                with self.autocast():
                    texts[chunk] = self.model.encode_text([job.expressions[e].text for e in chunk])
            features = visual if len(chunk) == 1 else visual.repeat_videos([len(chunk)])
            with self.autocast():
                out = self.model.decode(features, texts[chunk], size[None].repeat(len(chunk), 1))
            for i, exp in enumerate(chunk):
                yield exp, self._expression_output(out, i, shape)

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
