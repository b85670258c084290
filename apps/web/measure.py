"""`python -m apps.web.measure ARTIFACT IMAGE [--box x,y,w,h | --detect]`: the page against the Python app, in one run.

Both run the same LiteRT artifact on the same image and box: the page in a headless Chromium
(LiteRT.js, WASM, --page-threads or as many as the browser offers), the predict app in this
process (LiteRT's Python interpreter with its default threads, as `predict` runs). Prints each
side's median milliseconds per stage (find, infer, draw) over --frames after --warmup, their FPS
and its ratio, and the largest joint difference between the two (the page must agree with Python
within 0.5 px); `--screenshot PNG` saves the page as drawn.
Needs Chromium and Playwright (`pip install 'lagchand-edge[web]'`).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from apps.predict.detector import DetectorFinder, PalmDetector
from apps.predict.draw import mesh_edges
from apps.predict.hands import BoxFinder, parse_box
from apps.predict.model import open_artifact
from apps.predict.pipeline import STAGES, predict_frame
from apps.predict.sources import Frame, SourceError
from apps.web.browser import find_chromium, launch, open_page, page_joints, run_image
from apps.web.server import MISSING_VENDOR, Site, make_server, vendor_installed
from lagchand_edge.errors import UserError
from lagchand_edge.hand.joints import HAND_NAMES
from lagchand_edge.profile.anchors import cached_detector


def _median_stage_times(once: Callable[[], tuple[dict, object]], frames: int, warmup: int) -> tuple[dict, object]:
    """Each stage's median milliseconds over `frames` calls of `once` after `warmup` calls (the
    same for the Python app and the page), and the last call's result."""
    spent = {stage: [] for stage in STAGES}
    for k in range(warmup + frames):
        times, result = once()
        if k >= warmup:
            for stage in STAGES:
                spent[stage].append(times[stage])
    return {stage: float(np.median(ms)) for stage, ms in spent.items()}, result


def python_side(artifact: Path, image: np.ndarray, box, frames: int, warmup: int, palm_model: Path | None) -> tuple[dict, np.ndarray]:
    model, manifest, faces = open_artifact(artifact)
    edges = None if faces is None else mesh_edges(faces[1])
    frame = Frame(0, "image", image)
    find = DetectorFinder(PalmDetector(palm_model), track=False) if palm_model else BoxFinder(box)

    def once() -> tuple[dict, object]:
        hands, _, times = predict_frame(frame, model, find, manifest["inputs"][0]["shape"][2], edges)
        return times, hands
    medians, hands = _median_stage_times(once, frames, warmup)
    return medians, hands.joints_image


def page_side(artifact: Path, image: np.ndarray, box, frames: int, warmup: int, threads: int | None,
              palm_model: Path | None, screenshot: Path | None) -> tuple[dict, np.ndarray, str]:
    from playwright.sync_api import sync_playwright

    manifest = json.loads((artifact / "manifest.json").read_text())
    server = make_server(Site.build(artifact, manifest, palm_model), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as driver:
            browser = launch(driver, find_chromium())
            page = open_page(browser, f"http://127.0.0.1:{server.server_address[1]}/" + (f"?threads={threads}" if threads else ""))
            if page.evaluate("window.lagchand.status") != "ready":
                raise SourceError(f"the page failed: {page.evaluate('window.lagchand.error')}")
            if palm_model:
                page.check("#detect")

            def once() -> tuple[dict, dict]:
                result = run_image(page, image, box)
                if result is None:
                    raise SourceError("the palm detector finds no hands in this image; give --box instead")
                return result["timings_ms"], result
            medians, result = _median_stage_times(once, frames, warmup)
            if screenshot is not None:
                page.screenshot(path=str(screenshot))
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return medians, page_joints(result, HAND_NAMES), result["backend"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split(":")[0])
    parser.add_argument("artifact", type=Path, help="a LiteRT artifact folder")
    parser.add_argument("image", type=Path, help="a photo")
    parser.add_argument("--box", help="x,y,w,h around both hands (default: the centred square of the photo)")
    parser.add_argument("--detect", action="store_true", help="find the hands with the palm detector on both sides (`anchors fetch`)")
    parser.add_argument("--frames", type=int, default=20, help="timed runs on each side")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--page-threads", type=int, help="WASM threads on the page (default: as many as the browser offers)")
    parser.add_argument("--screenshot", type=Path, help="save the page as drawn (PNG)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    try:
        if find_chromium() is None:
            raise SourceError("no Chromium here (Debian: apt install chromium)")
        if not vendor_installed():
            raise SourceError(MISSING_VENDOR)
        try:
            import playwright  # noqa: F401
        except ImportError:
            raise SourceError("Playwright is not installed: pip install 'lagchand-edge[web]'") from None
        box = parse_box(args.box) if args.box else None
        try:
            image = np.asarray(Image.open(args.image).convert("RGB"))
        except OSError as exc:
            raise SourceError(f"{args.image}: cannot read image ({exc})") from None
        palm_model = cached_detector() if args.detect else None
        python_ms, python_joints = python_side(args.artifact, image, box, args.frames, args.warmup, palm_model)
        page_ms, joints, backend = page_side(args.artifact, image, box, args.frames, args.warmup, args.page_threads, palm_model, args.screenshot)
    except (SourceError, UserError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    fps = {side: 1000 / sum(ms.values()) for side, ms in (("page", page_ms), ("python", python_ms))}
    result = {"page_ms": page_ms, "python_ms": python_ms, "page_fps": fps["page"], "python_fps": fps["python"],
              "page_over_python_fps": fps["page"] / fps["python"], "max_joint_diff_px": float(np.abs(joints - python_joints).max()),
              "page_backend": backend, "frames": args.frames}
    if args.json:
        print(json.dumps(result))
    else:
        for side in ("page", "python"):
            ms = result[f"{side}_ms"]
            print(f"{side:6s}: {fps[side]:5.1f} FPS (ms per frame: " + ", ".join(f"{s} {ms[s]:.1f}" for s in STAGES) + ")")
        print(f"page / python FPS: {result['page_over_python_fps']:.2f}x; page backend: {backend}; "
              f"max joint difference: {result['max_joint_diff_px']:.3f} px (median of {args.frames} frames each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
