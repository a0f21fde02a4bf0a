"""Reading frames (image folders and video files) and writing overlay videos.

Frames are decoded exactly as the original inference scripts do: image files with PIL
(``Image.open(path).convert('RGB')``) and video files with PyAV (``frame.to_ndarray(format='rgb24')``,
as ``torchvision.io.read_video``). Every error names the file (and the frame) that caused it.

Overlays (``--video`` inference, ``--visualize``) are written as mp4 (PyAV; libx264 when available,
else MPEG-4 part 2) or as an animated GIF (PIL), one colour per expression.
"""
import logging
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".gif")
DEFAULT_FPS = 6
OVERLAY_ALPHA = 0.5
# One colour per expression, well separated (tab10 without grey), RGB.
OVERLAY_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                   (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207))


class FrameReadError(RuntimeError):
    """A frame (image file or video frame) is missing, truncated or cannot be decoded."""


def is_video_file(path: Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def list_frame_files(folder: Path) -> List[Path]:
    """The image files of a folder (``IMAGE_EXTENSIONS``), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FrameReadError(f"{folder}: frame folder not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FrameReadError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def read_image_rgb(path: Path) -> Image.Image:
    """An image file fully decoded as a PIL RGB image; FrameReadError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FrameReadError(f"{path}: frame not found")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:
        raise FrameReadError(f"{path}: cannot decode frame ({err})") from err


def iter_video_frames(path: Path) -> Iterator[np.ndarray]:
    """The frames of a video file one by one, as uint8 RGB arrays [H, W, 3] (PyAV)."""
    import av

    path = Path(path)
    if not path.is_file():
        raise FrameReadError(f"{path}: video not found")
    count = 0
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
                count += 1
    except (av.FFmpegError, ValueError, IndexError) as err:
        raise FrameReadError(f"{path}: cannot decode video after {count} frames ({err})") from err
    if count == 0:
        raise FrameReadError(f"{path}: no decodable video frames")


def read_video_frames(path: Path) -> List[np.ndarray]:
    """Every frame of a video file as uint8 RGB arrays [H, W, 3] (PyAV)."""
    return list(iter_video_frames(path))


def video_fps(path: Path) -> float:
    """The average frame rate of a video file (``DEFAULT_FPS`` when the container does not say)."""
    import av

    try:
        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate
    except (av.FFmpegError, IndexError) as err:
        raise FrameReadError(f"{path}: cannot open video ({err})") from err
    return float(rate) if rate else float(DEFAULT_FPS)


def count_video_frames(path: Path) -> int:
    """The number of decodable frames of a video file (decodes the stream once, keeping nothing)."""
    return sum(1 for _ in iter_video_frames(path))


# ------------------------------------------------------------------------------------------ overlays

def overlay_colour(index: int) -> Tuple[int, int, int]:
    """The RGB colour of expression ``index`` in overlays."""
    return OVERLAY_COLOURS[index % len(OVERLAY_COLOURS)]


def blend_masks(frame: np.ndarray, masks: Sequence[Optional[np.ndarray]], alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """frame [H, W, 3] uint8 with each mask [H, W] bool (or None) painted in its expression colour:
    ``pixel * (1 - alpha) + colour * alpha`` (the original ``vis_add_mask``), later expressions on top."""
    out = frame.astype(np.float32)
    for index, mask in enumerate(masks):
        if mask is None or not mask.any():
            continue
        colour = np.asarray(overlay_colour(index), dtype=np.float32)
        out[mask] = out[mask] * (1 - alpha) + colour * alpha
    return out.round().clip(0, 255).astype(np.uint8)


def outline_mask(frame: np.ndarray, mask: np.ndarray, colour: Tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """frame [H, W, 3] uint8 with the inner boundary of ``mask`` [H, W] bool (pixels of the mask with a 4-neighbour
    outside it or on the frame's edge) drawn in ``colour``."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    out = frame.copy()
    out[mask & ~interior] = colour
    return out


def draw_legend(frame: np.ndarray, captions: Sequence[str], numbered: bool = True) -> np.ndarray:
    """Write each caption in its expression colour at the top-left corner (PIL's built-in font), prefixed with
    its index when ``numbered``."""
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    y = 2
    for index, caption in enumerate(captions):
        text = f"{index}: {caption}" if numbered else caption
        left, top, right, bottom = draw.textbbox((4, y), text)
        draw.rectangle((left - 2, top - 1, right + 2, bottom + 1), fill=(0, 0, 0))
        draw.text((4, y), text, fill=overlay_colour(index))
        y = bottom + 3
    return np.asarray(image)


class OverlayWriter:
    """Stream RGB frames [H, W, 3] uint8 into an mp4 (``.mp4``) or animated GIF (``.gif``) file.

    mp4 needs even sizes for yuv420p: an odd last row/column is dropped. Use as a context manager.
    """

    def __init__(self, path: Path, fps: float):
        self.path = Path(path)
        self.fps = fps
        self.kind = self.path.suffix.lower()
        if self.kind not in (".mp4", ".gif"):
            raise ValueError(f"{self.path}: overlay must be .mp4 or .gif")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._gif_frames: List[Image.Image] = []
        self._container = None
        self._stream = None

    def __enter__(self) -> "OverlayWriter":
        return self

    def write(self, frame: np.ndarray) -> None:
        if self.kind == ".gif":
            self._gif_frames.append(Image.fromarray(frame).convert("P", palette=Image.Palette.ADAPTIVE))
            return
        import av

        height, width = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
        if self._container is None:
            self._container = av.open(str(self.path), mode="w", format="mp4")
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            self._stream = self._container.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1001))
            self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
            if codec == "mpeg4":
                self._stream.codec_context.bit_rate = 4_000_000
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:height, :width]), format="rgb24")
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)

    def close(self) -> None:
        if self.kind == ".gif":
            if self._gif_frames:
                first, *rest = self._gif_frames
                first.save(self.path, save_all=True, append_images=rest, duration=int(round(1000 / self.fps)), loop=0)
            return
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None

    def __exit__(self, *exc) -> None:
        self.close()


def write_overlay(path: Path, frames: Iterable[np.ndarray], masks: Iterator[Sequence[Optional[np.ndarray]]],
                  captions: Sequence[str], fps: float) -> Path:
    """Blend per-frame expression masks onto frames, add a legend, and write ``path`` (.mp4 or .gif).

    frames: RGB [H, W, 3] uint8; masks: for each frame, one [H, W] bool mask (or None) per caption.
    """
    with OverlayWriter(path, fps) as writer:
        for frame, frame_masks in zip(frames, masks):
            writer.write(draw_legend(blend_masks(frame, frame_masks), captions))
    logger.info("wrote overlay %s", path)
    return Path(path)
