"""The crop IntagHand applies: a square around both hands' 2D points, resized to 256x256, and
the way back from the model's weak-perspective outputs to crop and image pixels.

Torch-free at import (numpy and Pillow): the predict app runs it on devices without torch.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def square_box(points_2d: np.ndarray, fill: float = 0.7) -> tuple[float, float, float]:
    """(x0, y0, side) of a square centred on the points' box, the box filling `fill` of it."""
    lo, hi = points_2d.min(0), points_2d.max(0)
    centre = (lo + hi) / 2
    side = max(float((hi - lo).max()), 1.0) / fill
    return float(centre[0] - side / 2), float(centre[1] - side / 2), side


def crop_image(image: Image.Image, box: tuple[float, float, float], size: int) -> Image.Image:
    """Resample the square `box` of `image` to `size` x `size` (black outside the image)."""
    x0, y0, side = box
    scale = side / size
    return image.transform((size, size), Image.AFFINE, (scale, 0, x0, 0, scale, y0), resample=Image.BILINEAR)


def crop_intrinsics(k: np.ndarray, box: tuple[float, float, float], size: int) -> np.ndarray:
    """The pinhole matrix that projects into the cropped, resized image."""
    x0, y0, side = box
    s = size / side
    out = k.astype(np.float64).copy()
    out[0, 0] *= s
    out[1, 1] *= s
    out[0, 2] = (k[0, 2] - x0) * s
    out[1, 2] = (k[1, 2] - y0) * s
    return out


def weak_perspective_px(points: np.ndarray, camera: np.ndarray, image_size: int = 256) -> np.ndarray:
    """(..., 2, N, 3) model points and (..., 2, 3) cameras (s, tx, ty) -> (..., 2, N, 2) crop pixels:
    s * size * v[:2] + t * size / 2 + size / 2, the model's projection."""
    s, t = camera[..., :1, None], camera[..., None, 1:]
    half = image_size / 2
    return s * image_size * points[..., :2] + t * half + half


def crop_to_image(points: np.ndarray, box: tuple[float, float, float], size: int) -> np.ndarray:
    """(..., 2) pixels of a `size` crop of square `box` -> pixels of the full image (inverse of the crop)."""
    x0, y0, side = box
    return np.asarray(points) * (side / size) + np.array([x0, y0])


def to_model_input(images):
    """uint8 (B, H, W, 3) images (array or tensor) -> float (B, 3, H, W) torch tensor in [0, 1], the model's input."""
    import torch

    return torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255.0
