"""Pictures people look at: meshes and skeletons of both hands drawn over the image."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from lagchand_edge.hand.joints import HAND_NAMES, SKELETON

HAND_COLOURS = {"left": (40, 120, 255), "right": (255, 120, 30)}


def draw_hands(
    image: np.ndarray,
    joints_2d: np.ndarray,
    vertices_2d: np.ndarray | None = None,
    faces: dict[str, np.ndarray] | None = None,
    scale: int = 2,
    colours: dict[str, tuple[int, int, int]] = HAND_COLOURS,
    joint_valid: np.ndarray | None = None,
) -> Image.Image:
    """Overlay (2, V, 2) mesh edges and (2, 21, 2) skeletons on an RGB image, upscaled `scale` x."""
    base = Image.fromarray(image).convert("RGB")
    base = base.resize((base.width * scale, base.height * scale), Image.BICUBIC)
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for h, side in enumerate(HAND_NAMES):
        colour = colours[side]
        if vertices_2d is not None and faces is not None and vertices_2d.shape[1]:
            uv = vertices_2d[h] * scale
            edges = np.unique(np.sort(np.concatenate([faces[side][:, [0, 1]], faces[side][:, [1, 2]], faces[side][:, [2, 0]]]), 1), axis=0)
            for a, b in edges:
                draw.line([tuple(uv[a]), tuple(uv[b])], fill=colour + (90,), width=1)
        uv = joints_2d[h] * scale
        valid = np.ones(len(uv), bool) if joint_valid is None else joint_valid[h]
        for a, b in SKELETON:
            if valid[a] and valid[b]:
                draw.line([tuple(uv[a]), tuple(uv[b])], fill=(255, 255, 255, 255), width=4)
                draw.line([tuple(uv[a]), tuple(uv[b])], fill=colour + (255,), width=2)
        for j, (x, y) in enumerate(uv):
            if valid[j]:
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour + (255,), outline=(255, 255, 255, 255))
    return Image.alpha_composite(base.convert("RGBA"), overlay).convert("RGB")


def grid(rows: list[list[Image.Image]], gap: int = 4) -> Image.Image:
    """Pictures laid out row by row on a white sheet (rows may differ in length)."""
    width = max(sum(p.width for p in row) + gap * (len(row) - 1) for row in rows)
    heights = [max(p.height for p in row) for row in rows]
    sheet = Image.new("RGB", (width, sum(heights) + gap * (len(rows) - 1)), (255, 255, 255))
    y = 0
    for row, height in zip(rows, heights, strict=True):
        x = 0
        for picture in row:
            sheet.paste(picture, (x, y))
            x += picture.width + gap
        y += height + gap
    return sheet
