"""From the model's outputs to hands in the crop and in the frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lagchand_edge.data.transforms import crop_to_image, weak_perspective_px
from lagchand_edge.hand.joints import HAND_NAMES


@dataclass
class FrameHands:
    """Both hands of one frame (hand axis: 0 left, 1 right)."""

    square: tuple[float, float, float]  # the crop in the frame: x0, y0, side
    joints: np.ndarray  # (2, 21, 3) normalised metres, root-relative (middle MCP)
    vertices: np.ndarray  # (2, V, 3)
    camera: np.ndarray  # (2, 3) weak perspective: s, tx, ty
    joints_crop: np.ndarray  # (2, 21, 2) crop pixels
    vertices_crop: np.ndarray  # (2, V, 2)
    joints_image: np.ndarray  # (2, 21, 2) frame pixels
    vertices_image: np.ndarray  # (2, V, 2)

    def to_json(self) -> dict:
        """Per-hand joints and vertices: 3D (normalised metres), crop and frame pixels, rounded for size."""
        def hand(h: int) -> dict:
            return {"joints_3d": self.joints[h].round(5).tolist(), "joints_crop": self.joints_crop[h].round(2).tolist(),
                    "joints_image": self.joints_image[h].round(2).tolist(), "vertices_3d": self.vertices[h].round(5).tolist(),
                    "vertices_crop": self.vertices_crop[h].round(2).tolist(), "vertices_image": self.vertices_image[h].round(2).tolist(),
                    "camera": self.camera[h].round(6).tolist()}

        return {"crop_square": [round(v, 2) for v in self.square], **{side: hand(h) for h, side in enumerate(HAND_NAMES)}}


def decode(vertices: np.ndarray, joints: np.ndarray, camera: np.ndarray, square: tuple[float, float, float], size: int) -> FrameHands:
    """One image's outputs ((2, V, 3), (2, 21, 3), (2, 3)) for a crop `square` of a `size` model input."""
    joints_crop = weak_perspective_px(joints, camera, size)
    vertices_crop = weak_perspective_px(vertices, camera, size)
    return FrameHands(square, joints, vertices, camera, joints_crop, vertices_crop,
                      crop_to_image(joints_crop, square, size), crop_to_image(vertices_crop, square, size))
