"""Writers for every file format the benchmarks use, one helper per format.

Each writer creates the parent folders, writes deterministically (same input, same bytes) and
returns the path it wrote. The formats follow ``DATASETS.md``: RGB JPEG frames, mode-``P``
palette PNGs with the DAVIS colour map, mode-``L`` {0, 255} PNGs, plain ``json.dump`` output,
COCO RLE with ``str`` counts, HDF5 (MATLAB v7.3 style), MATLAB v5 ``.mat``, CSV, pickles and
H.264 (or MPEG-4 part 2) mp4 files readable by PyAV.
"""
from __future__ import annotations

import csv
import io
import json
import pickle
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
from PIL import Image

from rvos.util.rle import encode_rle  # noqa: F401  (re-exported: the generators' RLE writer)

JPEG_QUALITY = 90
MAT_HEADER_TEXT = b"MATLAB 5.0 MAT-file, written by datasets.synthetic"
MAT_HEADER_TEXT_BYTES = 116
PICKLE_PROTOCOL = 4
# x264's macroblock-tree and adaptive quantisation read uninitialised frame padding on some inputs, which
# makes the bytes differ from run to run; without them the encoder is reproducible.
X264_OPTIONS = {"crf": "20", "preset": "veryfast", "x264-params": "mbtree=0:aq-mode=0"}


def davis_palette() -> list[int]:
    """The 256-entry DAVIS / PASCAL-VOC colour map as a flat [r, g, b, r, g, b, ...] list.

    Index ``i`` gets its colour by spreading the bits of ``i`` over the three channels, most
    significant first (1 -> (128, 0, 0), 2 -> (0, 128, 0), 3 -> (128, 128, 0), ...).
    """
    palette = []
    for index in range(256):
        red = green = blue = 0
        value = index
        for shift in range(7, -1, -1):
            red |= ((value >> 0) & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        palette.extend((red, green, blue))
    return palette


def _prepare(path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_jpeg(path: Path, rgb: np.ndarray, quality: int = JPEG_QUALITY) -> Path:
    """Write an [H, W, 3] uint8 RGB array as a baseline JPEG."""
    path = _prepare(path)
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB").save(path, format="JPEG", quality=quality)
    return path


def write_rgb_png(path: Path, rgb: np.ndarray) -> Path:
    """Write an [H, W, 3] uint8 RGB array as an RGB PNG (JHMDB frames)."""
    path = _prepare(path)
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB").save(path, format="PNG")
    return path


def write_palette_png(path: Path, labels: np.ndarray) -> Path:
    """Write an [H, W] array of object ids (0 = background) as a mode-``P`` PNG with the DAVIS palette."""
    if labels.max(initial=0) > 255 or labels.min(initial=0) < 0:
        raise ValueError(f"{path}: object ids must lie in 0..255")
    path = _prepare(path)
    image = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8), mode="P")
    image.putpalette(davis_palette())
    image.save(path, format="PNG")
    return path


def write_binary_png(path: Path, mask: np.ndarray) -> Path:
    """Write an [H, W] boolean mask as a mode-``L`` PNG with values {0, 255} (prediction / held-out GT format)."""
    path = _prepare(path)
    Image.fromarray(np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8), mode="L").save(path, format="PNG")
    return path


def write_json(path: Path, payload: Any) -> Path:
    """Plain ``json.dump`` (no indentation), UTF-8, non-ASCII characters kept as they are."""
    path = _prepare(path)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, ensure_ascii=False)
    return path


def write_text_lines(path: Path, lines: Iterable[str], encoding: str = "utf-8") -> Path:
    """Write one line per item, each ending with a newline, in the given encoding."""
    path = _prepare(path)
    with open(path, "w", encoding=encoding, newline="\n") as handle:
        for line in lines:
            handle.write(line + "\n")
    return path


def write_csv(path: Path, rows: Iterable[Sequence[Any]], header: Optional[Sequence[str]] = None) -> Path:
    """Write rows with the ``csv`` module (fields holding commas are quoted), ``\\n`` line ends."""
    path = _prepare(path)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def write_pickle(path: Path, payload: Any) -> Path:
    """Pickle ``payload`` with a fixed protocol."""
    path = _prepare(path)
    with open(path, "wb") as handle:
        pickle.dump(payload, handle, protocol=PICKLE_PROTOCOL)
    return path


def write_h5(path: Path, datasets: Mapping[str, np.ndarray]) -> Path:
    """Write named arrays into an HDF5 file without creation timestamps (so the bytes are reproducible)."""
    import h5py

    path = _prepare(path)
    with h5py.File(path, "w", track_order=True) as handle:
        for name, array in datasets.items():
            handle.create_dataset(name, data=np.asarray(array), track_times=False)
    return path


def write_mat(path: Path, variables: Mapping[str, np.ndarray]) -> Path:
    """Write a MATLAB v5 ``.mat`` file (``scipy.io.loadmat`` reads it) with a fixed header text.

    ``scipy.io.savemat`` stamps the current time into the 116-byte header text; that text is
    replaced so that equal inputs give equal bytes.
    """
    import scipy.io

    buffer = io.BytesIO()
    scipy.io.savemat(buffer, dict(variables), do_compression=True)
    payload = bytearray(buffer.getvalue())
    payload[:MAT_HEADER_TEXT_BYTES] = MAT_HEADER_TEXT.ljust(MAT_HEADER_TEXT_BYTES, b" ")
    path = _prepare(path)
    path.write_bytes(bytes(payload))
    return path


def video_codec() -> str:
    """``libx264`` when this PyAV build has it, else ``mpeg4``."""
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_mp4(path: Path, frames: np.ndarray, fps: int) -> Path:
    """Encode [T, H, W, 3] uint8 RGB frames (H and W even) as a yuv420p mp4 that PyAV decodes to T frames."""
    import av

    num_frames, height, width = frames.shape[:3]
    if height % 2 or width % 2:
        raise ValueError(f"{path}: mp4 frames need an even height and width, got {height}x{width}")
    path = _prepare(path)
    codec = video_codec()
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        if codec == "libx264":
            stream.codec_context.options = X264_OPTIONS
        else:
            stream.codec_context.bit_rate = 4_000_000
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[index]), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
