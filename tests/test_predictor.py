"""The Python API (``from rvos import Predictor``) against ``inference.py --video`` on real video files: the same
masks pixel for pixel, every kind of video input, long videos in bounded windows, the outputs (PNGs, overlay,
RLE) and clear errors for bad inputs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from rvos import Predictor
from rvos.datasets.synthetic import make_dataset
from rvos.predict.writers import load_logits
from rvos.util.rle import decode_rles
from rvos.util.video_io import FrameReadError, read_video_frames
from test_inference_fixtures import (REPO_ROOT, SHORT_SIDE, base_args, read_pngs, run_inference, write_checkpoint,
                                     write_text_encoder)

SUB_VIDEO_LEN = 8


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny checkpoint, the synthetic mp4 with its two sentences, and a threshold at the median of the model's
    probabilities on it (random weights put most probabilities above 0.5: at 0.5 every mask would be full and
    equal masks would prove nothing)."""
    root = tmp_path_factory.mktemp("predictor")
    text_encoder = write_text_encoder(root / "text_encoder")
    checkpoint = write_checkpoint(root / "checkpoint.pth", text_encoder)
    video_root = make_dataset("video", root / "video", seed=0)
    info = json.loads((video_root / "synthetic_video.json").read_text())
    world = {"root": root, "text_encoder": text_encoder, "checkpoint": checkpoint,
             "video": video_root / info["video"], "texts": [e["exp"] for e in info["expressions"]], "info": info}
    probe = cli_masks(world, world["video"], root / "probe", "--save_logits")
    assert probe
    probabilities = np.concatenate([load_logits(p)["mask_probs"].astype(np.float32).ravel()
                                    for p in sorted((root / "probe" / "logits").rglob("*.npz"))])
    world["threshold"] = float(np.median(probabilities))
    return world


def cli_masks(world, video, out: Path, *extra):
    argv = base_args(world["checkpoint"], world["text_encoder"], out) + [
        "--video", str(video), "--sub_video_len", str(SUB_VIDEO_LEN), *extra]
    for text in world["texts"]:
        argv += ["--text", text]
    assert run_inference(argv) == 0
    name = Path(video).stem if Path(video).is_file() else Path(video).name
    return read_pngs(out / name)


def predictor(world, **options):
    options = {"sub_video_len": SUB_VIDEO_LEN, "threshold": world["threshold"], **options}
    return Predictor.from_pretrained(world["checkpoint"], device="cpu", text_encoder=str(world["text_encoder"]),
                                     msda_impl="pytorch", short_side=int(SHORT_SIDE), **options)


def as_pngs(prediction, folder: Path):
    return read_pngs(prediction.save_pngs(folder))


def assert_mixed(masks):
    """The masks are neither empty nor full (so equality is informative)."""
    fraction = float(np.mean([m.mean() for m in masks]))
    assert 0.1 < fraction < 0.9, fraction


@pytest.mark.parametrize("contiguous", [False, True], ids=["interleaved", "contiguous"])
def test_masks_equal_inference_video_pixel_for_pixel(world, tmp_path, contiguous):
    extra = ("--no_sampling",) if contiguous else ()
    cli = cli_masks(world, world["video"], tmp_path / "cli", "--threshold", str(world["threshold"]), *extra)
    result = predictor(world, no_sampling=contiguous)(world["video"], world["texts"])
    api = as_pngs(result, tmp_path / "api")
    assert api.keys() == cli.keys() and len(api) == len(world["texts"]) * world["info"]["num_frames"]
    assert all(np.array_equal(api[k], cli[k]) for k in cli)
    for exp, masks in enumerate(result.masks):
        assert masks.dtype == bool and masks.shape == (world["info"]["num_frames"], world["info"]["height"],
                                                       world["info"]["width"])
        assert all(np.array_equal(masks[t], cli[f"{exp}/{t:05d}.png"] > 0) for t in range(len(masks)))
    assert_mixed(result.masks)
    assert [s.shape for s in result.scores] == [(world["info"]["num_frames"],)] * len(world["texts"])
    assert all(np.all((s > 0) & (s < 1)) for s in result.scores)


def test_every_input_kind_gives_the_same_masks(world, tmp_path):
    """A frame folder (also through inference.py), a list of PIL images, a uint8 array, and gif / webm files
    against the frames PyAV decodes from them."""
    frames = read_video_frames(world["video"])[:10]
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"f{t:03d}.png")
    run = predictor(world)
    reference = run(np.stack(frames), world["texts"])
    assert_mixed(reference.masks)
    from_folder = run(folder, world["texts"])
    from_pil = run([Image.fromarray(f) for f in frames], world["texts"])
    for other in (from_folder, from_pil):
        assert all(np.array_equal(a, b) for a, b in zip(reference.masks, other.masks))
        assert all(np.array_equal(a, b) for a, b in zip(reference.scores, other.scores))
    assert from_folder.frame_names == [f"f{t:03d}" for t in range(len(frames))]
    cli = cli_masks(world, folder, tmp_path / "cli", "--threshold", str(world["threshold"]))
    api = as_pngs(from_folder, tmp_path / "api")
    assert api.keys() == cli.keys() and all(np.array_equal(api[k], cli[k]) for k in cli)

    gif = tmp_path / "clip.gif"
    Image.fromarray(frames[0]).save(gif, save_all=True, append_images=[Image.fromarray(f) for f in frames[1:]],
                                    duration=100, loop=0)
    webm = tmp_path / "clip.webm"
    with av.open(str(webm), mode="w") as container:
        stream = container.add_stream("libvpx", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    for path in (gif, webm):
        decoded = read_video_frames(path)
        assert len(decoded) == len(frames)
        from_file = run(path, world["texts"])
        from_array = run(np.stack(decoded), world["texts"])
        assert all(np.array_equal(a, b) for a, b in zip(from_file.masks, from_array.masks)), path.suffix
        assert from_file.frame_names == [f"{t:05d}" for t in range(len(frames))]


def test_long_video_runs_in_bounded_windows(world, tmp_path):
    """A video longer than --sub_video_len: the backbone sees at most that many frames at once and runs once per
    window for all expressions; the masks are the command line's."""
    frames = read_video_frames(world["video"])
    long_video = np.concatenate([np.stack(frames)] * 2)  # 40 frames, 5 sub-videos of 8
    run = predictor(world)
    seen = []
    encode_video = run.model.encode_video

    def spy(samples):
        seen.append(samples.tensors.shape[1])
        return encode_video(samples)

    run.model.encode_video = spy
    progress = []
    result = run(long_video, world["texts"], progress=lambda done, total: progress.append((done, total)))
    windows = -(-len(long_video) // SUB_VIDEO_LEN)
    assert len(seen) == windows and max(seen) <= SUB_VIDEO_LEN and sum(seen) == len(long_video)
    assert progress[-1] == (len(long_video) * len(world["texts"]),) * 2
    assert all(m.shape[0] == len(long_video) for m in result.masks)
    folder = tmp_path / "long"
    folder.mkdir()
    for t, frame in enumerate(long_video):
        Image.fromarray(frame).save(folder / f"{t:05d}.png")
    cli = cli_masks(world, folder, tmp_path / "cli", "--threshold", str(world["threshold"]))
    api = as_pngs(result, tmp_path / "api")
    assert api.keys() == cli.keys() and all(np.array_equal(api[k], cli[k]) for k in cli)


def test_overlay_rle_and_lookup(world, tmp_path):
    result = predictor(world)(world["video"], [t.upper() for t in world["texts"]])
    assert result.expressions == [" ".join(t.lower().split()) for t in world["texts"]]
    assert np.array_equal(result[world["texts"][1].upper()], result.masks[1])
    assert result.fps == world["info"]["fps"]
    for suffix in ("mp4", "gif"):
        path = result.overlay(tmp_path / f"overlay.{suffix}")
        overlay = read_video_frames(path)
        assert len(overlay) == world["info"]["num_frames"]
        assert overlay[0].shape[:2] == (world["info"]["height"], world["info"]["width"])
    rle = json.loads(json.dumps(result.to_rle()))
    assert [e["expression"] for e in rle] == result.expressions
    for entry, masks, scores in zip(rle, result.masks, result.scores):
        assert [f["frame"] for f in entry["frames"]] == result.frame_names
        assert np.array_equal(decode_rles([f["segmentation"] for f in entry["frames"]]), masks)
        assert np.allclose([f["score"] for f in entry["frames"]], scores)
    with pytest.raises(KeyError, match="not one of the expressions"):
        result["a sentence never asked"]


def test_bad_inputs_are_named(world, tmp_path):
    run = predictor(world)
    frames = read_video_frames(world["video"])[:3]
    with pytest.raises(ValueError, match="uint8"):
        run(np.stack(frames).astype(np.float32), ["x"])
    with pytest.raises(ValueError, match="frame 1 must be"):
        run([Image.fromarray(frames[0]), "not a frame"], ["x"])
    with pytest.raises(ValueError, match="at least one expression"):
        run(np.stack(frames), [])
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        run(tmp_path / "missing.mp4", ["x"])
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    with pytest.raises(ValueError, match="not a video file"):
        run(text, ["x"])
    with pytest.raises(FrameReadError, match="frame 1"):
        run([frames[0], frames[1][:50]], ["x"])
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(Path(world["video"]).read_bytes()[:200])
    with pytest.raises(FrameReadError, match="broken.mp4"):
        run(broken, ["x"])
    with pytest.raises(ValueError, match="unknown option 'not_an_option'"):
        Predictor.from_pretrained(world["checkpoint"], device="cpu", not_an_option=1)


def test_import_rvos_stays_light():
    code = "import sys, rvos; assert 'torch' not in sys.modules; from rvos import Predictor; print(Predictor.__name__)"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "Predictor"
