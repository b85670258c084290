"""The page in a headless Chromium (Debian's `chromium`, driven by Playwright): for `measure` and the tests."""

from __future__ import annotations

import base64
import io
import shutil

import numpy as np
from PIL import Image

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
READY_MS = 120_000  # loading LiteRT.js and compiling a model, on a busy 2-core machine


def find_chromium() -> str | None:
    return next((shutil.which(name) for name in CHROMIUM_NAMES if shutil.which(name)), None)


def launch(driver, executable: str):
    """A headless Chromium with a fake camera (so a test can grant or deny one)."""
    return driver.chromium.launch(executable_path=executable, args=["--no-sandbox", "--use-fake-device-for-media-stream"])


def open_page(browser, url: str, permissions: tuple[str, ...] = ()):
    """The page at `url`, once its model is loaded or it has said why not (window.lagchand.status)."""
    context = browser.new_context(viewport={"width": 1100, "height": 900}, permissions=list(permissions))
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("window.lagchand && ['ready', 'failed'].includes(window.lagchand.status)", timeout=READY_MS)
    return page


def run_image(page, image: np.ndarray, box: list[float] | None) -> dict:
    """The page's result for an RGB image (handed over as a lossless PNG) and box (x, y, w, h) around both hands."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return page.evaluate("([url, box]) => window.lagchand.runImage(url, box)", [url, None if box is None else list(box)])


def page_joints(result: dict, hands: tuple[str, ...]) -> np.ndarray:
    """(2, 21, 2) frame pixels from a page result."""
    return np.array([np.reshape(result[hand]["joints_image"], (-1, 2)) for hand in hands])
