"""Where frames come from: an image, a folder of images, a video file or a camera (by index).

Frames are RGB uint8 arrays. A frame that cannot be read comes through with its error, so the
others carry on; a source that cannot be opened at all raises `SourceError` (one line).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

from lagchand_edge.io import IMAGE_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".gif")
MAX_PIXELS = 64_000_000  # refuse larger pictures (decompression bombs) instead of running out of memory
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class SourceError(Exception):
    """The source cannot be used at all (missing, empty, unreadable, no such camera)."""


@dataclass
class Frame:
    index: int
    name: str  # the image's file name, or frame_000123 for video and camera
    image: np.ndarray | None  # (H, W, 3) RGB uint8; None when it could not be read
    error: str | None = None


@dataclass
class Source:
    kind: str  # image, folder, video or camera
    frames: Iterator[Frame]
    count: int | None  # frames, when known in advance
    fps: float | None = None  # of a video or camera


def _read_image(path: Path, index: int) -> Frame:
    try:
        with Image.open(path) as handle:
            return Frame(index, path.name, np.asarray(handle.convert("RGB")))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return Frame(index, path.name, None, f"{path}: cannot read image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")


def _cv2():
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # its warnings (a camera that is not there) would precede our one-line error
    try:
        import cv2
    except ImportError:
        raise SourceError("video files and cameras need OpenCV: pip install 'lagchand-edge[video]' (opencv-python-headless)") from None
    return cv2


def _capture_frames(capture, limit: int | None) -> Iterator[Frame]:
    cv2 = _cv2()
    index = 0
    try:
        while limit is None or index < limit:
            ok, bgr = capture.read()
            if not ok:
                return
            yield Frame(index, f"frame_{index:06d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1
    finally:
        capture.release()


def _gif_frames(path: Path, limit: int | None) -> tuple[Iterator[Frame], int, float]:
    try:
        handle = Image.open(path)
        count, duration = handle.n_frames, handle.info.get("duration") or 100
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise SourceError(f"{path}: cannot read GIF ({exc})") from None

    def frames() -> Iterator[Frame]:
        with handle:
            for index, frame in enumerate(ImageSequence.Iterator(handle)):
                if limit is not None and index >= limit:
                    return
                yield Frame(index, f"frame_{index:06d}", np.asarray(frame.convert("RGB")))

    return frames(), count, 1000.0 / duration


def open_source(source: str, max_frames: int | None = None) -> Source:
    """An image, a folder of images, a video (.mp4, .gif, ...) or a camera index ('0')."""
    if source.isdigit():
        cv2 = _cv2()
        capture = cv2.VideoCapture(int(source))
        if not capture.isOpened():
            raise SourceError(f"camera {source} not found (or busy)")
        return Source("camera", _capture_frames(capture, max_frames), max_frames, capture.get(cv2.CAP_PROP_FPS) or None)
    path = Path(source)
    if not path.exists():
        raise SourceError(f"{path}: not found")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())[:max_frames]
        if not files:
            raise SourceError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)})")
        return Source("folder", (_read_image(p, i) for i, p in enumerate(files)), len(files))
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return Source("image", iter([_read_image(path, 0)]), 1)
    if suffix not in VIDEO_SUFFIXES:
        raise SourceError(f"{path}: not an image ({', '.join(IMAGE_SUFFIXES)}) or video ({', '.join(VIDEO_SUFFIXES)})")
    if path.stat().st_size == 0:
        raise SourceError(f"{path}: empty file")
    if suffix == ".gif":
        frames, count, fps = _gif_frames(path, max_frames)
        return Source("video", frames, count if max_frames is None else min(count, max_frames), fps)
    cv2 = _cv2()
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SourceError(f"{path}: cannot open video (unknown codec or not a video)")
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    if count is not None and max_frames is not None:
        count = min(count, max_frames)
    return Source("video", _capture_frames(capture, max_frames), count, capture.get(cv2.CAP_PROP_FPS) or None)
