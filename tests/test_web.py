"""`serve` and the page (#27): what the server hands out, what `serve` refuses, and the page in a
headless Chromium (Debian's `chromium` driven by Playwright; skipped when either is absent): its
crop and joints against the Python runner's on the same image and box, its messages on bad input."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from apps.web.browser import find_chromium, launch, open_page, page_joints, run_image
from apps.web.server import MISSING_VENDOR, Site, make_server, vendor_installed
from lagchand_edge.hand.joints import HAND_NAMES
from tests.test_cli import assert_user_error, run_cli
from tests.test_predict import runner_crop_and_joints

REPO_ROOT = Path(__file__).resolve().parents[1]
BROWSER = find_chromium()
PAGE_SCREENSHOT = "web-page.png"
JOINT_GOAL_PX = 0.5  # #27: page vs Python runner, max joint difference


def _site(folder: Path) -> Site:
    return Site.build(folder, json.loads((folder / "manifest.json").read_text()))


class Running:
    """A served site on a free loopback port, for the length of a `with`."""

    def __init__(self, site: Site) -> None:
        self.server = make_server(site, port=0)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __enter__(self) -> Running:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _get(url: str) -> tuple[int, bytes, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, b"", dict(exc.headers)


def test_the_server_hands_out_its_map_and_nothing_else(fp32_artifacts):
    folder = fp32_artifacts["tflite"].path
    site = _site(folder)
    assert site.resolve("/artifact/model.tflite") == folder / "model.tflite"
    for outside in ("/vendor/core/../../../../../etc/passwd", "/vendor/core/%2e%2e/package.json", "/artifact/../manifest.json",
                    "/server.py", "/apps/web/server.py", "/artifact/", "/vendor/"):
        path = site.resolve(outside)
        assert path is None or path.is_relative_to((REPO_ROOT / "apps/web/node_modules").resolve()), outside
    with Running(site) as running:
        status, body, headers = _get(running.url + "artifact/model.tflite")
        assert status == 200 and body == (folder / "model.tflite").read_bytes()
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp" and headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert _get(running.url + "server.py")[0] == 404 and _get(running.url + "vendor/")[0] == 404
        assert b"LAGCHand" in _get(running.url)[1]
        config = json.loads(_get(running.url + "config.json")[1])
    assert config["crop_fill"] == 0.7 and len(config["skeleton"]) == 20 and config["detector"] is None


def test_serve_refuses_what_it_cannot_show(fp32_artifacts, tmp_path):
    assert_user_error(run_cli("serve", str(fp32_artifacts["executorch"].path)), "LiteRT artifacts")
    assert_user_error(run_cli("serve", str(tmp_path)), "not a lagchand-edge artifact")
    # without the page's LiteRT.js (no npm at `make`) serve says so before it tries the port
    refusal = "cannot listen" if vendor_installed() else MISSING_VENDOR
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert_user_error(run_cli("serve", str(fp32_artifacts["tflite"].path), "--port", str(taken.getsockname()[1])), refusal)


def test_serve_prints_its_address_and_serves_the_page(fp32_artifacts):
    if not vendor_installed():
        pytest.skip("LiteRT.js is not installed (make web)")
    process = subprocess.Popen([sys.executable, "-m", "lagchand_edge", "serve", str(fp32_artifacts["tflite"].path), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    try:
        line = process.stdout.readline()
        assert "serving" in line and "http://localhost:" in line, line + process.stderr.read()
        url = line.split("at ", 1)[1].split(" ", 1)[0]
        assert _get(url.replace("localhost", "127.0.0.1"))[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


# ---- the page in a browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if BROWSER is None:
        pytest.skip("no headless Chromium here (apt install chromium)")
    if not vendor_installed():
        pytest.skip("LiteRT.js is not installed (make web)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as driver:
        chromium = launch(driver, BROWSER)
        yield chromium
        chromium.close()


def _photo(synth_root) -> tuple[list[float], np.ndarray]:
    """A synthetic render and the box around its hands."""
    data = json.loads((synth_root / "annotations/test/InterHand2.6M_test_data.json").read_text())
    image = np.asarray(Image.open(synth_root / "images/test" / data["images"][1]["file_name"]).convert("RGB"))
    return data["annotations"][1]["bbox"], image


@pytest.mark.parametrize("form", ["fp32", "int8", "int8-static", "fp32-nhwc"])
def test_the_page_sees_and_draws_what_the_python_runner_does(form, browser, request, synth_root, tmp_path):
    """The page's crop is Python's, and its joints the Python runner's within 0.5 px, for fp32 and
    for int8 whose kernels are fixed-point (W8A8 modules, the rest float; LiteRT.js takes no int8
    model inputs, so not all-W8A8). The default int8 plan's dynamic int8 (each
    runtime quantizes activations per call in its own way: 1-2.5 px apart on the reference model)
    must be as close to the FP32 model on the page as in Python."""
    from calibration.plans import DEFAULT_INT8_PLAN, Int8Plan
    from lagchand_edge.convert import build_artifacts

    checkpoint = request.getfixturevalue("tiny_checkpoint")
    if form == "fp32-nhwc":  # an app's camera-frame layout (`convert --input nhwc`): the page feeds HWC
        (built,) = build_artifacts("tflite", "fp32", tmp_path / "nhwc", checkpoint, calib_data=synth_root, calib_num=2, input_form="nhwc")
        artifact = built.path
    elif form == "int8-static":
        (built,) = build_artifacts("tflite", "int8", tmp_path / "static", checkpoint, calib_data=synth_root, calib_num=2,
                                   int8_plan=Int8Plan(static=DEFAULT_INT8_PLAN.static))
        artifact = built.path
    else:
        artifact = request.getfixturevalue(f"{form}_artifacts")["tflite"].path
    box, image = _photo(synth_root)
    want_crop, want_joints = runner_crop_and_joints(artifact, image, box)
    with Running(_site(artifact)) as running:
        page = open_page(browser, running.url)
        assert page.evaluate("window.lagchand.status") == "ready", page.evaluate("window.lagchand.error")
        result = run_image(page, image, box)
        crop = np.array(page.evaluate("Array.from(window.lagchand.lastInput)"), dtype=np.float32)
        crop = crop.reshape(1, 256, 256, 3).transpose(0, 3, 1, 2) if form.endswith("nhwc") else crop.reshape(want_crop.shape)
        page.screenshot(path=str(tmp_path / PAGE_SCREENSHOT))
        fps = page.text_content("#fps")
    assert np.abs(crop - want_crop).max() < 1e-6  # the same pixels: Pillow's bilinear crop, reproduced
    got = page_joints(result, HAND_NAMES)
    if form == "int8":
        _, fp32_joints = runner_crop_and_joints(request.getfixturevalue("fp32_artifacts")["tflite"].path, image, box)
        page_error, python_error = (np.linalg.norm(j - fp32_joints, axis=-1).mean() for j in (got, want_joints))
        assert page_error <= python_error + JOINT_GOAL_PX, (page_error, python_error)
    else:
        assert np.abs(got - want_joints).max() <= JOINT_GOAL_PX, np.abs(got - want_joints).max()
    assert "FPS" in fps and "inference" in fps and result["backend"].startswith("WASM")
    shot = np.asarray(Image.open(tmp_path / PAGE_SCREENSHOT).convert("RGB"))
    assert shot.std() > 20  # a drawn page, not a blank one


def _painted(page) -> bool:
    """The canvas shows something (a picture or a message), not one flat colour."""
    return page.evaluate("""() => { const c = document.getElementById('view');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 4; i < d.length; i += 4) if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2]) return true;
        return false; }""")


def _says(page, text: str) -> bool:
    """Whether the page's error message comes to contain `text` (within a minute); fails with the message it shows."""
    try:
        page.wait_for_function("text => document.getElementById('message').className === 'error' && "
                               "document.getElementById('message').textContent.includes(text)", arg=text, timeout=60_000)
    except Exception:  # playwright's TimeoutError
        pytest.fail(f"the page does not say {text!r}; it says {page.text_content('#message')!r}")
    return True


def test_the_page_says_what_is_wrong_and_never_shows_a_blank_canvas(browser, fp32_artifacts, tmp_path):
    folder = fp32_artifacts["tflite"].path
    with Running(_site(folder)) as running:
        page = open_page(browser, running.url)
        page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a picture"}])
        assert _says(page, "notes.txt: not an image or a video") and _painted(page)
        page.set_input_files("#file", files=[{"name": "clip.mp4", "mimeType": "video/mp4", "buffer": bytes(range(256)) * 64}])
        assert _says(page, "clip.mp4: this browser cannot decode the video") and _painted(page)
        page.click("#camera")  # no permission granted: the browser denies the camera
        assert _says(page, "Webcam: camera access was denied") and _painted(page)
        missing = open_page(browser, running.url + "?artifact=nothing/")
        assert _says(missing, "Cannot load the artifact's manifest.json (nothing/manifest.json): HTTP 404") and _painted(missing)
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps(manifest | {"target": "executorch"}))
    with Running(_site(other)) as running:
        assert _says(open_page(browser, running.url), 'not a LAGCHand LiteRT model: its manifest names the target "executorch"')
    manifest["inputs"][0]["shape"] = [1, 3, 128, 128]
    (other / "manifest.json").write_text(json.dumps(manifest))
    with Running(_site(other)) as running:
        assert _says(open_page(browser, running.url), "The model file does not match its manifest")


def test_the_page_runs_on_a_camera(browser, fp32_artifacts):
    with Running(_site(fp32_artifacts["tflite"].path)) as running:
        page = open_page(browser, running.url, permissions=("camera",))
        page.click("#camera")
        page.wait_for_function("(window.lagchand.frames ?? 0) >= 3", timeout=120_000)
        assert page.text_content("#source") == "webcam" and "FPS" in page.text_content("#fps")


def test_the_page_finds_the_hands_as_the_python_detector_does(browser, fp32_artifacts, real_root):
    from apps.predict.detector import DetectorFinder, PalmDetector
    from apps.predict.sources import Frame
    from lagchand_edge.errors import UserError
    from lagchand_edge.profile.anchors import cached_detector

    try:
        palm_model = cached_detector()
    except UserError:
        pytest.skip("no palm detector cached here (lagchand-edge anchors fetch)")
    folder = fp32_artifacts["tflite"].path
    python = DetectorFinder(PalmDetector(palm_model), track=False)
    site = Site.build(folder, json.loads((folder / "manifest.json").read_text()), palm_model)
    found = 0
    with Running(site) as running:
        page = open_page(browser, running.url)
        page.check("#detect")
        for path in sorted(real_root.glob("*.jpg")):
            image = np.asarray(Image.open(path).convert("RGB"))
            want = python(Frame(0, path.name, image))
            got = run_image(page, image, None)
            if want is None:
                assert got is None and "No hands found" in page.text_content("#message"), path.name
                continue
            found += 1
            np.testing.assert_allclose(got["crop_square"], want, atol=1e-3)  # the same letterbox, bit for bit: the same palms
    assert found >= 2


def test_measure_times_the_page_and_the_python_app_on_one_frame(browser, fp32_artifacts, synth_root, tmp_path):
    """`python -m apps.web.measure`: each side's median stage times over the timed frames, and the
    joint difference between the page and the Python app on the same photo and box."""
    box, image = _photo(synth_root)
    photo = tmp_path / "photo.png"  # lossless: both sides read the same pixels
    Image.fromarray(image).save(photo)
    done = subprocess.run([sys.executable, "-m", "apps.web.measure", str(fp32_artifacts["tflite"].path), str(photo), "--box", ",".join(map(str, box)),
                           "--frames", "2", "--warmup", "1", "--screenshot", str(tmp_path / "shot.png"), "--json"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["frames"] == 2 and set(result["page_ms"]) == set(result["python_ms"]) == {"find", "infer", "draw"}
    assert result["page_ms"]["infer"] > 0 and result["python_ms"]["infer"] > 0
    assert result["page_over_python_fps"] == pytest.approx(result["page_fps"] / result["python_fps"])
    assert result["max_joint_diff_px"] <= JOINT_GOAL_PX and result["page_backend"].startswith("WASM")
    assert (tmp_path / "shot.png").stat().st_size > 0
