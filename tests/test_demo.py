"""The browser demo (tools/demo.py): started as a user starts it, on a free port of 127.0.0.1, driven in a real
headless Chromium: upload a synthetic mp4, type two expressions, run, and the zip of masks the page returns equals
the Predictor's masks for the same input; bad uploads get a sentence on the page. Plus the upload checks alone."""
import importlib.util
import io
import json
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from browser import browser_page, free_port, missing_extra
from rvos import Predictor
from rvos.datasets.synthetic import make_dataset
from rvos.predict.writers import load_logits
from rvos.tools import demo
from rvos.util.video_io import read_video_frames
from test_inference_fixtures import (REPO_ROOT, SHORT_SIDE, base_args, run_inference, torchrun_env, write_checkpoint,
                                     write_text_encoder)

FRAME_CAP = 12
SUB_VIDEO_LEN = 8
STARTUP_TIMEOUT_S = 240
RUN_TIMEOUT_MS = 240_000
UPLOAD_ENDINGS = ("frames per second", "Cannot use this file")
RUN_ENDINGS = ("Segmented", "Cannot run", "Something went wrong")


def write_header_only_mp4(path: Path) -> Path:
    """An mp4 with a video stream declared and no frame in it."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny checkpoint (random weights, our format), the synthetic mp4 and its two sentences, and a mask threshold
    at the median of the model's probabilities on the video (random weights put most probabilities above 0.5: at
    0.5 every mask would be full and equal masks would prove nothing)."""
    root = tmp_path_factory.mktemp("demo")
    text_encoder = write_text_encoder(root / "text_encoder")
    checkpoint = write_checkpoint(root / "checkpoint.pth", text_encoder)
    video_root = make_dataset("video", root / "video", seed=1)
    info = json.loads((video_root / "synthetic_video.json").read_text())
    texts = [expression["exp"] for expression in info["expressions"]]
    probe = root / "probe"
    argv = base_args(checkpoint, text_encoder, probe) + ["--video", str(video_root / info["video"]), "--save_logits",
                                                         "--sub_video_len", str(SUB_VIDEO_LEN)]
    for text in texts:
        argv += ["--text", text]
    assert run_inference(argv) == 0
    probabilities = np.concatenate([load_logits(path)["mask_probs"].astype(np.float32).ravel()
                                    for path in sorted((probe / "logits").rglob("*.npz"))])
    return {"root": root, "text_encoder": text_encoder, "checkpoint": checkpoint, "texts": texts,
            "video": video_root / info["video"], "num_frames": info["num_frames"],
            "threshold": float(np.median(probabilities))}


def model_options(world) -> dict:
    return {"text_encoder": str(world["text_encoder"]), "msda_impl": "pytorch", "threshold": world["threshold"],
            "sub_video_len": SUB_VIDEO_LEN}


@pytest.fixture(scope="module")
def demo_server(world):
    """``python tools/demo.py --resume CKPT ...`` on a free port; yields its URL; stopped afterwards."""
    if importlib.util.find_spec("gradio") is None:
        missing_extra("the gradio package")
    port = free_port()
    argv = [sys.executable, str(REPO_ROOT / "tools" / "demo.py"), "--resume", str(world["checkpoint"]),
            "--port", str(port), "--frame-cap", str(FRAME_CAP), "--short-side", SHORT_SIDE,
            "--work-dir", str(world["root"] / "demo_work")]
    for name, value in model_options(world).items():
        argv += ["--model-option", f"{name}={value}"]
    log = open(world["root"] / "demo.log", "w")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=torchrun_env(), cwd=world["root"])
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"the demo exited with {process.returncode}:\n{(world['root'] / 'demo.log').read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the demo did not answer within {STARTUP_TIMEOUT_S} s")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def page_failures(page):
    """Failed requests, less the page's own closing of its event streams (gradio's queue/data SSE)."""
    return [f for f in page.rvos_failures if not ("/gradio_api/queue/data" in f and "ERR_ABORTED" in f)]


def open_demo(page, url):
    page.goto(url, wait_until="networkidle")
    page.locator("#run").wait_for()


def upload(page, path: Path):
    page.locator("#video-input input[type=file]").set_input_files(str(path))


def wait_for_status(page, endings, timeout=30_000) -> str:
    """The status text once it holds one of ``endings`` (the first is the one expected by the caller)."""
    page.wait_for_function("ends => { const s = document.querySelector('#status')?.innerText || '';"
                           " return ends.some(e => s.includes(e)); }", arg=list(endings), timeout=timeout)
    return page.locator("#status").inner_text()


def wait_for_upload(page) -> str:
    """The sentence about the uploaded file."""
    return wait_for_status(page, UPLOAD_ENDINGS)


def wait_for_run(page, timeout=30_000) -> str:
    """The sentence that ends a run (on a page where no run has ended yet)."""
    return wait_for_status(page, RUN_ENDINGS, timeout)


def test_demo_masks_equal_the_predictors(world, demo_server, tmp_path):
    with browser_page() as page:
        open_demo(page, demo_server)
        assert page.locator("#frame-cap input[type=number]").input_value() == str(FRAME_CAP)
        assert page.locator("#short-side input[type=number]").input_value() == SHORT_SIDE
        upload(page, world["video"])
        assert "160x96 at 10 frames per second" in wait_for_upload(page)
        page.locator("#expressions textarea").fill("\n".join(world["texts"]))
        page.locator("#run").click()
        status = wait_for_run(page, timeout=RUN_TIMEOUT_MS)
        assert f"Segmented {FRAME_CAP} frames with 2 expression(s)" in status
        assert "only its first" in status  # the video has more frames than the cap
        zip_url = page.locator("#masks a").first.get_attribute("href")
        overlay_url = page.locator("#overlay video").get_attribute("src")
        archive, overlay = page.request.get(zip_url), page.request.get(overlay_url)
        assert archive.ok and overlay.ok
        archive, overlay = archive.body(), overlay.body()
        assert page_failures(page) == []
        assert "Traceback" not in page.content()
    (tmp_path / "overlay.mp4").write_bytes(overlay)
    assert len(read_video_frames(tmp_path / "overlay.mp4")) == FRAME_CAP

    frames = np.stack(read_video_frames(world["video"])[:FRAME_CAP])
    predictor = Predictor.from_pretrained(world["checkpoint"], device="cpu", short_side=int(SHORT_SIDE),
                                          **model_options(world))
    expected = predictor(frames, world["texts"])
    with zipfile.ZipFile(io.BytesIO(archive)) as handle:
        names = set(handle.namelist())
        assert json.loads(handle.read("expressions.json")) == {"0": world["texts"][0], "1": world["texts"][1]}
        rle, expected_rle = json.loads(handle.read("masks_rle.json")), expected.to_rle()
        for got, want in zip(rle, expected_rle):  # another process: scores equal to float tolerance
            assert [f["segmentation"] for f in got["frames"]] == [f["segmentation"] for f in want["frames"]]
            assert [f["score"] for f in got["frames"]] == pytest.approx([f["score"] for f in want["frames"]],
                                                                         abs=1e-4, rel=1e-4)
        assert len(rle) == len(expected_rle)
        for exp_id, masks in enumerate(expected.masks):
            assert masks.shape == (FRAME_CAP, *frames.shape[1:3])
            assert 0.05 < masks.mean() < 0.95, "masks all empty or all full: the comparison would prove nothing"
            for t, frame_name in enumerate(expected.frame_names):
                member = f"{exp_id}/{frame_name}.png"
                assert member in names
                got = np.asarray(Image.open(io.BytesIO(handle.read(member)))) > 0
                assert np.array_equal(got, masks[t]), member


def test_bad_uploads_get_a_sentence(world, demo_server, tmp_path):
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("these are notes, not a video")
    empty = write_header_only_mp4(tmp_path / "empty.mp4")
    with browser_page() as page:
        for path in (not_a_video, empty):
            open_demo(page, demo_server)
            upload(page, path)
            assert f"Cannot use this file: {path.name} has no video frames that can be decoded" in wait_for_upload(page)
            page.locator("#expressions textarea").fill("the circle")
            page.locator("#run").click()
            status = wait_for_run(page)
            assert f"Cannot run: {path.name} has no video frames" in status and str(path.parent) not in status
            assert "Traceback" not in page.content()
        open_demo(page, demo_server)
        upload(page, world["video"])
        wait_for_upload(page)
        page.locator("#run").click()
        assert "Cannot run: Type at least one expression" in wait_for_run(page)
        assert page_failures(page) == []


def test_upload_checks(world, tmp_path, monkeypatch):
    frames, fps, longer, shrunk = demo.read_upload(str(world["video"]), 5)
    assert frames.shape[0] == 5 and frames.dtype == np.uint8 and longer and not shrunk and fps > 0
    full, _, longer, _ = demo.read_upload(str(world["video"]), world["num_frames"])
    assert full.shape[0] == world["num_frames"] and not longer
    monkeypatch.setattr(demo, "MAX_FRAME_SHORT_SIDE", 48)
    small, _, _, shrunk = demo.read_upload(str(world["video"]), 5)
    assert shrunk and small.shape[1:] == (48, 80, 3)  # 96x160 frames scaled to a short side of 48
    with pytest.raises(demo.UploadError, match="empty.mp4 has no video frames"):
        demo.read_upload(str(write_header_only_mp4(tmp_path / "empty.mp4")), 5)
    with pytest.raises(demo.UploadError, match="first"):
        demo.read_upload(None, 5)
    assert demo.parse_expressions(" the dog \n\n the red car\n") == ["the dog", "the red car"]
    with pytest.raises(demo.UploadError):
        demo.parse_expressions("\n  \n")


def test_progress_is_reported(world, tmp_path):
    """The page's progress bar is fed from the Predictor's progress: fractions rise to 0.9 while segmenting."""
    predictor = Predictor.from_pretrained(world["checkpoint"], device="cpu", short_side=int(SHORT_SIDE),
                                          **model_options(world))
    session = demo.DemoSession(predictor, demo.DemoSettings(frame_cap=4, short_side=int(SHORT_SIDE)), tmp_path)
    steps = []
    output = session.segment(str(world["video"]), "the circle", 4, int(SHORT_SIDE),
                             lambda fraction, desc: steps.append((fraction, desc)))
    fractions = [fraction for fraction, _ in steps]
    assert fractions == sorted(fractions) and any("segmenting" in desc for _, desc in steps)
    assert output.overlay.is_file() and output.masks_zip.is_file()


def test_missing_gradio_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)
    with pytest.raises(ImportError, match="requirements-extras.txt"):
        demo.import_gradio()
