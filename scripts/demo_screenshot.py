"""Screenshot of the browser demo for the README (docs/demo.png), taken in Debian's headless chromium.

    python scripts/demo_screenshot.py --resume CKPT_OR_FOLDER [--model-option NAME=VALUE ...] [--out docs/demo.png]

Starts tools/demo.py's page on a free local port, picks the bundled synthetic sample (its two sentences), presses
Run, waits for the result and saves the page as a 256-colour PNG. Needs the extras (gradio, playwright) and
chromium (scripts/setup_env.sh installs them).
"""
import argparse
import logging
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rvos import Predictor  # noqa: E402
from rvos.tools import demo  # noqa: E402

VIEWPORT = {"width": 1280, "height": 860}
RUN_TIMEOUT_MS = 600_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resume", required=True, type=Path)
    parser.add_argument("--model-option", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--frame-cap", type=int, default=demo.CPU_FRAME_CAP)
    parser.add_argument("--short-side", type=int, default=demo.CPU_SHORT_SIDE)
    parser.add_argument("--out", type=Path, default=Path("docs/demo.png"))
    parser.add_argument("--seek", type=float, default=0.5, help="where the overlay video is shown, as a fraction "
                        "of its duration (default: 0.5)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args(argv)
    if not args.chromium:
        parser.error("chromium not found: apt-get install -y chromium (or pass --chromium PATH)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from playwright.sync_api import sync_playwright

    predictor = Predictor.from_pretrained(args.resume, device="cpu", **demo.model_options(args.model_option))
    with tempfile.TemporaryDirectory(prefix="rvos_screenshot_") as scratch:
        scratch = Path(scratch)
        sample = demo.make_sample(scratch / "sample")
        session = demo.DemoSession(predictor, demo.DemoSettings(args.frame_cap, args.short_side), scratch / "runs")
        app = demo.build_app(session, f"checkpoint `{args.resume.name}` on cpu", sample)
        url = demo.launch(app, "127.0.0.1", free_port(), [scratch])
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium, headless=True,
                                                     args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(url, wait_until="networkidle")
                page.get_by_text(sample[1][0]).first.click()  # the sample row of the examples table
                page.wait_for_function("() => (document.querySelector('#status')?.innerText || '')"
                                       ".includes('frames per second')")
                page.locator("#run").click()
                page.wait_for_function("() => (document.querySelector('#status')?.innerText || '')"
                                       ".includes('Segmented')", timeout=RUN_TIMEOUT_MS)
                page.wait_for_function("() => document.querySelector('#overlay video')?.readyState >= 2")
                page.evaluate("seek => { const v = document.querySelector('#overlay video');"
                              " v.currentTime = v.duration * seek; }", args.seek)
                page.wait_for_timeout(500)
                shot = scratch / "page.png"
                page.screenshot(path=str(shot), full_page=True)
                browser.close()
        finally:
            app.close()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        Image.open(shot).convert("RGB").quantize(256).save(args.out, optimize=True)
    logging.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
