"""A real headless browser for tests: Debian's ``chromium`` driven by the ``playwright`` package through its
``executable_path`` (playwright never downloads a browser here), and a real HTTP server on 127.0.0.1.

``scripts/setup_env.sh`` installs chromium with apt-get when it is missing. A test that needs the browser skips
(with the reason) only when chromium is missing *and* there is no apt-get to install it, or when the set-up was
told to leave the extras out (``RVOS_SKIP_EXTRAS=1``); otherwise a missing chromium or playwright package is a
failure naming the command that installs it.
"""
import contextlib
import functools
import http.server
import os
import shutil
import socket
import threading
from pathlib import Path
from typing import Iterator, List

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser")
SETUP_COMMAND = "bash scripts/setup_env.sh"


def missing_extra(what: str) -> None:
    """Skip when the extras were deliberately left out (RVOS_SKIP_EXTRAS=1), else fail naming the install."""
    if os.environ.get("RVOS_SKIP_EXTRAS") == "1":
        pytest.skip(f"{what} is not installed and RVOS_SKIP_EXTRAS=1 left the extras out")
    pytest.fail(f"{what} is not installed: run {SETUP_COMMAND} (pip install -r requirements-extras.txt; chromium "
                "with apt-get)")


def chromium_executable() -> str:
    """The path of Debian's chromium (``RVOS_CHROMIUM`` overrides); skips or fails as the module says."""
    override = os.environ.get("RVOS_CHROMIUM")
    if override:
        return override
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    if shutil.which("apt-get") is None:
        pytest.skip("browser test skipped: Debian's chromium is not installed and there is no apt-get to install it "
                    "(install chromium, or set RVOS_CHROMIUM to a Chromium binary)")
    missing_extra("Debian's chromium")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve_directory(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1 (a free port) for the duration; yields its base URL."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def browser_page(viewport=(1280, 900)):
    """A page of a fresh headless chromium; ``page.rvos_failures`` collects failed requests and HTTP errors."""
    executable = chromium_executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_extra("the playwright package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            failures: List[str] = []
            page.on("requestfailed", lambda request: failures.append(f"{request.url}: {request.failure}"))
            page.on("response", lambda response: failures.append(f"{response.url}: HTTP {response.status}")
                    if response.status >= 400 else None)
            page.rvos_failures = failures
            yield page
        finally:
            browser.close()


def broken_images(page) -> List[str]:
    """The src of every <img> of the page that did not load (incomplete or zero natural width)."""
    return page.evaluate("() => Array.from(document.images)"
                         ".filter(img => !img.complete || img.naturalWidth === 0).map(img => img.src)")
