"""Browser demo: segment your own video with your own sentences.

    python tools/demo.py --resume CKPT_OR_FOLDER [--device cpu] [--port 7860] [--frame-cap 32] [--short-side 240]

Open the printed address, upload a video (or pick the bundled synthetic sample, generated at start-up), type one
expression per line and press Run: the page shows the overlay video and offers a zip of the masks (one PNG per
frame and expression). The frame cap (the first N frames are segmented) and the short side the model sees keep
it usable on a CPU; both are on the page. Needs gradio (``pip install -r requirements-extras.txt``).
"""
import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import zipfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Deque, List, Optional, Sequence, Tuple

import numpy as np
import yaml
from PIL import Image

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rvos import Predictor  # noqa: E402
from rvos.datasets.synthetic import make_dataset  # noqa: E402
from rvos.predict.loading import resize_frame  # noqa: E402
from rvos.util.video_io import FrameReadError, iter_video_frames, video_fps  # noqa: E402

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install -r requirements-extras.txt  (gradio==6.31.0)"
DEFAULT_PORT = 7860
CPU_FRAME_CAP, GPU_FRAME_CAP = 32, 200
CPU_SHORT_SIDE = 240
MAX_FRAME_CAP = 1000
SHORT_SIDE_RANGE = (64, 720)
MAX_FRAME_SHORT_SIDE = 720  # larger uploads are scaled down as decoded: memory stays bounded
MAX_EXPRESSIONS = 9  # one overlay colour each
MAX_UPLOAD = "200mb"
KEPT_RUNS = 8
SAMPLE_SEED = 0


class UploadError(ValueError):
    """What is wrong with the user's input, as a sentence for the page."""


@dataclass
class DemoSettings:
    """The demo's defaults: frames segmented at most, the short side the model sees (pixels)."""

    frame_cap: int
    short_side: int
    max_frame_cap: int = MAX_FRAME_CAP


@dataclass
class DemoOutput:
    """One run's files (the overlay mp4, the zip of masks) and the sentence shown with them."""

    overlay: Path
    masks_zip: Path
    message: str


def parse_expressions(text: Optional[str]) -> List[str]:
    """One expression per non-empty line."""
    expressions = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not expressions:
        raise UploadError("Type at least one expression, one per line.")
    if len(expressions) > MAX_EXPRESSIONS:
        raise UploadError(f"At most {MAX_EXPRESSIONS} expressions at once ({len(expressions)} given).")
    return expressions


def read_upload(path: Optional[str], frame_cap: int) -> Tuple[np.ndarray, float, bool, bool]:
    """The first ``frame_cap`` frames of an uploaded video -> (frames uint8 [T, H, W, 3], fps, longer, shrunk).

    ``longer``: the video has more frames than the cap; ``shrunk``: its frames were larger than
    ``MAX_FRAME_SHORT_SIDE`` and were scaled down to it as they were decoded (memory stays bounded). Anything that is
    not a decodable video with frames is an UploadError naming the file (not its temporary path); the details go to
    the log.
    """
    if not path:
        raise UploadError("Upload a video (or pick the sample) first.")
    name = Path(path).name
    frames: List[np.ndarray] = []
    longer = shrunk = False
    try:
        for frame in iter_video_frames(Path(path)):
            if len(frames) == frame_cap:
                longer = True
                break
            if min(frame.shape[:2]) > MAX_FRAME_SHORT_SIDE:
                frame, shrunk = np.asarray(resize_frame(Image.fromarray(frame), MAX_FRAME_SHORT_SIDE, None)), True
            frames.append(frame)
        fps = video_fps(Path(path))
    except FrameReadError as err:
        logger.info("upload %s: %s", name, err)
        if not frames:
            raise UploadError(f"{name} has no video frames that can be decoded (is it a video file?).") from err
        raise UploadError(f"{name} is damaged: decoding stops after frame {len(frames)}.") from err
    if len({frame.shape for frame in frames}) > 1:
        raise UploadError(f"{name}: the frames do not all have the same size.")
    return np.stack(frames), fps, longer, shrunk


def describe_upload(path: Optional[str]) -> Tuple[Optional[np.ndarray], str]:
    """(first frame [H, W, 3] uint8 or None, a sentence about the upload) for the page, as soon as it arrives."""
    if not path:
        return None, ""
    try:
        frames, fps, _, _ = read_upload(path, 1)
    except UploadError as err:
        return None, f"**Cannot use this file:** {err}"
    height, width = frames.shape[1:3]
    return frames[0], f"{Path(path).name}: {width}x{height} at {fps:g} frames per second."


class DemoSession:
    """Runs the Predictor for the page and keeps the outputs of the last ``KEPT_RUNS`` runs on disk."""

    def __init__(self, predictor: Predictor, settings: DemoSettings, work_dir: Path):
        self.predictor = predictor
        self.settings = settings
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._runs: Deque[Path] = deque()

    def segment(self, video: Optional[str], expressions_text: Optional[str], frame_cap: int, short_side: int,
                progress=None) -> DemoOutput:
        """Segment the uploaded ``video`` with every expression; UploadError for bad input."""
        step = progress or (lambda *args, **kwargs: None)
        expressions = parse_expressions(expressions_text)
        frame_cap = int(frame_cap)
        if not 1 <= frame_cap <= self.settings.max_frame_cap:
            raise UploadError(f"The frame cap must be between 1 and {self.settings.max_frame_cap}.")
        if not SHORT_SIDE_RANGE[0] <= int(short_side) <= SHORT_SIDE_RANGE[1]:
            raise UploadError(f"The short side must be between {SHORT_SIDE_RANGE[0]} and {SHORT_SIDE_RANGE[1]} pixels.")
        step(0.0, desc="decoding the video")
        frames, fps, longer, shrunk = read_upload(video, frame_cap)
        count = len(frames)

        def advance(done: int, total: int) -> None:
            step(0.05 + 0.85 * done / max(total, 1), desc=f"segmenting: {done} of {total} masks")

        # The inference resize of this run; runs never overlap (gradio's queue runs one event at a time).
        self.predictor.short_side = int(short_side)
        result = self.predictor(frames, expressions, progress=advance)
        step(0.9, desc="writing the overlay and the masks")
        run_dir = self._new_run_dir()
        overlay = result.overlay(run_dir / "overlay.mp4", fps=fps)
        masks_zip = write_masks_zip(result, expressions, run_dir)
        message = f"Segmented {count} frames with {len(expressions)} expression(s) at short side {int(short_side)}."
        if longer:
            message += (f" The video is longer than the frame cap: only its first {frame_cap} frames were used "
                        "(raise the cap to use more).")
        if shrunk:
            message += f" Its frames were scaled to a short side of {MAX_FRAME_SHORT_SIDE} pixels (overlay and masks)."
        return DemoOutput(overlay, masks_zip, message)

    def _new_run_dir(self) -> Path:
        """A fresh folder for one run's outputs; the oldest beyond ``KEPT_RUNS`` are removed."""
        run_dir = Path(tempfile.mkdtemp(prefix="run_", dir=self.work_dir))
        self._runs.append(run_dir)
        while len(self._runs) > KEPT_RUNS:
            shutil.rmtree(self._runs.popleft(), ignore_errors=True)
        return run_dir


def write_masks_zip(result, expressions: Sequence[str], run_dir: Path) -> Path:
    """masks.zip: ``<exp_id>/<frame>.png`` as ``save_pngs`` writes them, ``expressions.json`` {exp_id: text as
    typed} and ``masks_rle.json`` (``to_rle``: COCO RLE and score per frame and expression)."""
    masks_dir = Path(result.save_pngs(run_dir / "masks"))
    (masks_dir / "expressions.json").write_text(json.dumps({str(i): text for i, text in enumerate(expressions)},
                                                           indent=1))
    (masks_dir / "masks_rle.json").write_text(json.dumps(result.to_rle()))
    archive = run_dir / "masks.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        for path in sorted(masks_dir.rglob("*")):
            if path.is_file():
                handle.write(path, path.relative_to(masks_dir).as_posix())
    return archive


def make_sample(folder: Path) -> Tuple[Path, List[str]]:
    """The bundled sample: the synthetic world's custom video (generated, not shipped) and its sentences."""
    root = make_dataset("video", folder, seed=SAMPLE_SEED)
    info = json.loads((root / "synthetic_video.json").read_text())
    return root / info["video"], [expression["exp"] for expression in info["expressions"]]


def import_gradio():
    """gradio, or an ImportError naming the install command."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError as err:
        raise ImportError(f"the browser demo needs gradio: {INSTALL_HINT}") from err
    return gradio


def build_app(session: DemoSession, title: str, sample: Optional[Tuple[Path, List[str]]] = None):
    """The gradio page of ``session`` (not launched)."""
    gr = import_gradio()

    def run(video, expressions_text, frame_cap, short_side, progress=gr.Progress()):
        try:
            output = session.segment(video, expressions_text, frame_cap, short_side, progress)
        except UploadError as err:
            return None, None, f"**Cannot run:** {err}"
        except Exception as err:  # noqa: BLE001 - the page gets a sentence, the log gets the trace
            logger.exception("demo run failed")
            return None, None, f"**Something went wrong:** {type(err).__name__}: {err}"
        return str(output.overlay), str(output.masks_zip), output.message

    settings = session.settings
    # gradio's copies of uploads and outputs older than an hour are removed every hour
    with gr.Blocks(title="RVOS demo", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(f"## Referring video object segmentation\n{title}")
        with gr.Row():
            with gr.Column():
                video = gr.File(label="Video (mp4, webm, avi, mov, mkv, gif, ...)", file_count="single",
                                type="filepath", elem_id="video-input")
                first_frame = gr.Image(label="First frame", interactive=False, height=200, elem_id="first-frame")
                expressions = gr.Textbox(label="Expressions (one per line)", lines=3, elem_id="expressions",
                                         placeholder="the red car\nthe dog jumping")
                with gr.Row():
                    frame_cap = gr.Slider(1, settings.max_frame_cap, value=settings.frame_cap, step=1,
                                          label="Frame cap (the first N frames are segmented)", elem_id="frame-cap")
                    short_side = gr.Slider(*SHORT_SIDE_RANGE, value=settings.short_side, step=8,
                                           label="Short side the model sees (pixels)", elem_id="short-side")
                button = gr.Button("Run", variant="primary", elem_id="run")
            with gr.Column():
                status = gr.Markdown(elem_id="status")
                overlay = gr.Video(label="Overlay", interactive=False, elem_id="overlay")
                masks = gr.File(label="Masks (zip of PNGs)", interactive=False, elem_id="masks")
        if sample is not None:
            gr.Examples([[str(sample[0]), "\n".join(sample[1])]], inputs=[video, expressions],
                        label="Sample (synthetic video)")
        video.change(describe_upload, inputs=video, outputs=[first_frame, status])
        button.click(run, inputs=[video, expressions, frame_cap, short_side], outputs=[overlay, masks, status])
    return app


def launch(app, host: str, port: int, allowed: Sequence[Path]):
    """Start the server without blocking; returns the app's local URL."""
    gr = import_gradio()
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # no web fonts: works offline
    _, url, _ = app.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False,
                           max_file_size=MAX_UPLOAD, allowed_paths=[str(p) for p in allowed], theme=theme,
                           footer_links=[])
    return url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resume", required=True, type=Path,
                        help="checkpoint: an original .pth or a converted folder (config.json + model.safetensors)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--amp", choices=("fp16", "bf16"), default=None, help="autocast on GPU (default: off)")
    parser.add_argument("--model-option", action="append", default=[], metavar="NAME=VALUE",
                        help="an option of inference.py for a public checkpoint (e.g. backbone=swin_l_p4w7, "
                             "text_encoder=FOLDER); repeatable. Checkpoints of this project carry their options")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    parser.add_argument("--frame-cap", type=int, default=None,
                        help=f"default frame cap on the page (default: {CPU_FRAME_CAP} on CPU, {GPU_FRAME_CAP} on GPU)")
    parser.add_argument("--short-side", type=int, default=None,
                        help=f"default short side on the page (default: {CPU_SHORT_SIDE} on CPU, the model's own "
                             "inference size on GPU)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where outputs are written (default: a temporary folder removed at exit)")
    parser.add_argument("--no-sample", action="store_true", help="do not generate the synthetic sample video")
    return parser


def model_options(pairs: Sequence[str]) -> dict:
    """``NAME=VALUE`` pairs -> keyword options (values read as YAML: numbers, booleans, lists)."""
    options = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--model-option {pair!r}: expected NAME=VALUE")
        options[name.strip()] = yaml.safe_load(value)
    return options


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import_gradio()
    predictor = Predictor.from_pretrained(args.resume, device=args.device, amp=args.amp,
                                          **model_options(args.model_option))
    on_cpu = str(args.device).startswith("cpu")
    settings = DemoSettings(args.frame_cap or (CPU_FRAME_CAP if on_cpu else GPU_FRAME_CAP),
                            args.short_side or (CPU_SHORT_SIDE if on_cpu else predictor.short_side))
    with tempfile.TemporaryDirectory(prefix="rvos_demo_") as scratch:
        work_dir = args.work_dir or Path(scratch)
        sample = None if args.no_sample else make_sample(Path(scratch) / "sample")
        session = DemoSession(predictor, settings, work_dir / "runs")
        app = build_app(session, f"checkpoint `{args.resume.name}` on {args.device}", sample)
        url = launch(app, args.host, args.port, [work_dir, Path(scratch)])
        logger.info("demo running at %s (Ctrl-C to stop)", url)
        try:
            app.block_thread()
        finally:
            app.close()


if __name__ == "__main__":
    main()
