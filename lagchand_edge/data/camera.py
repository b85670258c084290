"""Camera maths in InterHand2.6M's conventions (world mm; cam = R (world - campos))."""

from __future__ import annotations

import numpy as np


def world_to_camera(points: np.ndarray, camrot: np.ndarray, campos: np.ndarray) -> np.ndarray:
    """(..., 3) world points -> camera coordinates, as the release's `world2cam` does."""
    return (np.asarray(points) - np.asarray(campos)) @ np.asarray(camrot).T


def camera_to_world(points: np.ndarray, camrot: np.ndarray, campos: np.ndarray) -> np.ndarray:
    return np.asarray(points) @ np.asarray(camrot) + np.asarray(campos)


def intrinsics(focal: np.ndarray, princpt: np.ndarray) -> np.ndarray:
    """3x3 pinhole matrix from the release's `focal` (fx, fy) and `princpt` (cx, cy)."""
    return np.array([[focal[0], 0.0, princpt[0]], [0.0, focal[1], princpt[1]], [0.0, 0.0, 1.0]])


def project(points_cam: np.ndarray, k: np.ndarray) -> np.ndarray:
    """(..., 3) camera points -> (..., 2) pixels."""
    z = np.maximum(points_cam[..., 2:3], 1e-6)
    return points_cam[..., :2] / z * np.array([k[0, 0], k[1, 1]]) + np.array([k[0, 2], k[1, 2]])


def unproject(pixels: np.ndarray, depth: np.ndarray, k: np.ndarray) -> np.ndarray:
    """(..., 2) pixels and (...) depths -> (..., 3) camera points (inverse of `project`)."""
    xy = (pixels - np.array([k[0, 2], k[1, 2]])) / np.array([k[0, 0], k[1, 1]]) * depth[..., None]
    return np.concatenate([xy, depth[..., None]], axis=-1)


def look_at(campos: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, -1.0, 0.0])) -> np.ndarray:
    """Rotation (world -> camera) of a camera at `campos` looking at `target`, image y down."""
    forward = target - campos
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-6:
        right = np.cross(forward, np.array([1.0, 0.0, 0.0]))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward])
