"""Both hands drawn on the frame: mesh wireframe (numpy, fast enough for video) and skeleton."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from apps.predict.decode import FrameHands
from lagchand_edge.hand.joints import HAND_NAMES, SKELETON
from lagchand_edge.viz import HAND_COLOURS

WIRE_ALPHA = 0.55


def mesh_edges(faces: np.ndarray) -> np.ndarray:
    """(E, 2) unique vertex pairs of a triangle mesh's edges."""
    pairs = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return np.unique(np.sort(pairs, axis=1), axis=0)


def _wireframe(canvas: np.ndarray, points: np.ndarray, edges: np.ndarray, colour: tuple[int, int, int]) -> None:
    """Blend `colour` into `canvas` (H, W, 3 float) along every edge, one sample per pixel of length."""
    a, b = points[edges[:, 0]], points[edges[:, 1]]
    steps = np.clip(np.ceil(np.abs(b - a).max(1)).astype(int) + 1, 2, 64)
    owner = np.repeat(np.arange(len(edges)), steps)
    t = (np.arange(owner.size) - np.repeat(np.cumsum(steps) - steps, steps)) / np.repeat(steps - 1, steps)
    xy = np.round(a[owner] + (b[owner] - a[owner]) * t[:, None]).astype(int)
    height, width = canvas.shape[:2]
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    flat = np.unique(xy[inside, 1] * width + xy[inside, 0])
    view = canvas.reshape(-1, 3)
    view[flat] = view[flat] * (1 - WIRE_ALPHA) + np.array(colour) * WIRE_ALPHA


def draw_frame(image: np.ndarray, hands: FrameHands, edges: np.ndarray | None = None, show_crop: bool = True) -> Image.Image:
    """The frame with both hands: wireframe (when the mesh's `edges` are known), skeleton, joints, and the crop square."""
    canvas = image.astype(np.float32)
    if edges is not None:
        for h, side in enumerate(HAND_NAMES):
            _wireframe(canvas, hands.vertices_image[h], edges, HAND_COLOURS[side])
    picture = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    width = max(1, round(min(image.shape[:2]) / 240))
    for h, side in enumerate(HAND_NAMES):
        uv = hands.joints_image[h]
        for a, b in SKELETON:
            draw.line([tuple(uv[a]), tuple(uv[b])], fill=(255, 255, 255), width=width + 2)
            draw.line([tuple(uv[a]), tuple(uv[b])], fill=HAND_COLOURS[side], width=width)
        radius = width + 1
        for x, y in uv:
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=HAND_COLOURS[side], outline=(255, 255, 255))
    if show_crop:
        x0, y0, side_px = hands.square
        draw.rectangle([x0, y0, x0 + side_px, y0 + side_px], outline=(255, 255, 0), width=1)
    return picture
