"""Serve the page with one LiteRT artifact (stdlib HTTP, no torch): `lagchand-edge serve ARTIFACT`.

What the page may fetch is a fixed map, nothing else: its own files, LiteRT.js from
`apps/web/node_modules` (installed by `make web` from the npm registry, never a CDN at run time),
the artifact folder's model, manifest and mesh under `artifact/`, the opt-in palm detector under
`detector/`, and `config.json`, which hands the page the toolkit's own drawing and hand-finding
constants, so that page and Python draw and crop by the same numbers. Pages are served
cross-origin isolated, so that LiteRT.js may run its threaded WASM build.
"""

from __future__ import annotations

import io
import json
import mimetypes
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from apps.predict import detector
from apps.predict.draw import WIRE_ALPHA
from apps.predict.hands import CROP_FILL
from lagchand_edge.hand.joints import HAND_NAMES, SKELETON
from lagchand_edge.viz import HAND_COLOURS

WEB = Path(__file__).parent
PAGE_FILES = ("index.html", "app.js", "hands.js", "palm.js", "style.css")
VENDOR = {"core": WEB / "node_modules/@litertjs/core", "wasm-utils": WEB / "node_modules/@litertjs/wasm-utils"}
ARTIFACT_FILES = ("manifest.json", "hand_faces.npy", "MODEL_CARD.md")
MISSING_VENDOR = "the page's LiteRT.js is not installed: run `make web` (npm ci in apps/web, from the npm registry)"
MODEL_SUFFIX = ".tflite"  # LiteRT.js runs LiteRT flatbuffers only


def page_runs(manifest: dict) -> bool:
    """Whether the page can run the model of the artifact this manifest describes."""
    return manifest["file"].endswith(MODEL_SUFFIX)


def vendor_installed() -> bool:
    return all((folder / "package.json").is_file() for folder in VENDOR.values())


def page_config(detect: bool) -> dict:
    """config.json: what the page draws and finds with, from the Python modules that define it."""
    return {
        "artifact": "artifact/", "wasm": "vendor/core/wasm/",
        "hand_names": list(HAND_NAMES), "hand_colours": {hand: list(rgb) for hand, rgb in HAND_COLOURS.items()},
        "skeleton": [list(pair) for pair in SKELETON], "crop_fill": CROP_FILL, "wire_alpha": WIRE_ALPHA,
        "detector": "detector/palm.tflite" if detect else None,
        "palm": {"input": detector.INPUT, "strides": [list(s) for s in detector.STRIDES], "min_score": detector.MIN_SCORE,
                 "nms_iou": detector.NMS_IOU, "hand_scale": detector.HAND_SCALE, "hand_shift": detector.HAND_SHIFT,
                 "wrist": detector.WRIST, "middle_mcp": detector.MIDDLE_MCP, "smoothing": detector.SMOOTHING},
    }


@dataclass
class Site:
    """What the server answers: URL path -> file, plus the generated config.json."""

    files: dict[str, Path]
    folders: dict[str, Path]  # URL prefix -> folder (LiteRT.js); paths may not leave it
    config: bytes

    @classmethod
    def build(cls, artifact: Path, manifest: dict, detector_file: Path | None = None) -> Site:
        files = {f"/{name}": WEB / name for name in PAGE_FILES} | {"/": WEB / "index.html"}
        files |= {f"/artifact/{name}": artifact / name for name in (*ARTIFACT_FILES, manifest["file"])}
        if detector_file is not None:
            files["/detector/palm.tflite"] = detector_file
        folders = {f"/vendor/{name}/": folder for name, folder in VENDOR.items()}
        config = json.dumps(page_config(detector_file is not None)).encode()
        return cls(files, folders, config)

    def resolve(self, url_path: str) -> Path | None:
        if url_path in self.files:
            return self.files[url_path]
        for prefix, folder in self.folders.items():
            if url_path.startswith(prefix):
                path = (folder / url_path[len(prefix):]).resolve()
                return path if path.is_relative_to(folder.resolve()) else None
        return None


class Handler(SimpleHTTPRequestHandler):
    """GET and HEAD on the site's map only; cross-origin isolated; quiet."""

    def __init__(self, *args, site: Site, **kwargs) -> None:
        self.site = site
        super().__init__(*args, **kwargs)

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def send_head(self):
        url_path = self.path.split("?", 1)[0].split("#", 1)[0]
        if url_path == "/config.json":
            return self._body(self.site.config, "application/json")
        path = self.site.resolve(url_path)
        if path is None or not path.is_file():
            self.send_error(404, "not part of this page")
            return None
        kind = {".js": "text/javascript", ".wasm": "application/wasm", ".tflite": "application/octet-stream",
                ".npy": "application/octet-stream"}.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return self._body(path.read_bytes(), kind)

    def _body(self, body: bytes, kind: str):
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)

    def list_directory(self, path):  # never: the site is a fixed map
        self.send_error(404, "not part of this page")

    def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
        pass


def make_server(site: Site, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A server for `site` (port 0: any free port); OSError when the address is taken."""
    server = ThreadingHTTPServer((host, port), partial(Handler, site=site))
    server.daemon_threads = True
    return server
