"""Training targets as IntagHand scales them (DESIGN.md §0).

Per hand root-relative at the middle-finger MCP, metres, and both hands scaled together so that
the mean of their wrist->middle-MCP lengths is 9.5 cm. 2D targets are crop pixels / image size.
"""

from __future__ import annotations

import math

import torch

from lagchand_edge.hand.joints import MIDDLE_MCP, WRIST

METACARPAL_M = 0.095


def metacarpal_length(joints: torch.Tensor) -> torch.Tensor:
    """|middle MCP - wrist| of (..., 21, 3) joints: the bone targets and the protocol scale by."""
    return torch.linalg.vector_norm(joints[..., MIDDLE_MCP, :] - joints[..., WRIST, :], dim=-1)


def normalise_hands(joints_mm: torch.Tensor, vertices_mm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 2, 21, 3) and (B, 2, V, 3) camera-space mm -> root-relative, scale-normalised metres."""
    bone = metacarpal_length(joints_mm).mean(1)  # (B,)
    scale = (METACARPAL_M / bone.clamp_min(1e-6))[:, None, None, None]
    root = joints_mm[:, :, MIDDLE_MCP : MIDDLE_MCP + 1]
    return (joints_mm - root) * scale, (vertices_mm - root) * scale


def gaussian_heatmaps(joints_2d: torch.Tensor, size: int, image_size: int, sigma: float = 2.0) -> torch.Tensor:
    """(B, 2, 21, 2) crop pixels -> (B, 2, 21, size, size) Gaussians (peak 1) at heatmap scale."""
    points = joints_2d * (size / image_size)
    grid = torch.arange(size, dtype=joints_2d.dtype, device=joints_2d.device) + 0.5
    dx = (grid - points[..., 0:1]) ** 2  # (B, 2, 21, size)
    dy = (grid - points[..., 1:2]) ** 2
    return torch.exp(-(dy[..., :, None] + dx[..., None, :]) / (2 * sigma * sigma))


def weak_perspective(points: torch.Tensor, camera: torch.Tensor, image_size: int) -> torch.Tensor:
    """v2d = s * size * v[:2] + t * size/2 + size/2, returned in units of the image size."""
    s = camera[..., 0:1, None]
    t = camera[..., None, 1:3]
    half = image_size / 2
    return (s * image_size * points[..., :2] + t * half + half) / image_size


def lr_at(progress: float, lr: float, schedule: str = "step", warmup: float = 0.0) -> float:
    """The learning rate at `progress` (0 = start, 1 = end of training).

    'step': the paper's schedule, lr for the first half, then lr / 10. 'cosine': a linear warm-up
    over the first `warmup` of training, then a cosine decay to zero.
    """
    if schedule == "step":
        return lr if progress < 0.5 else lr / 10
    if progress < warmup:
        return lr * max(progress, 1e-3) / warmup
    return lr * 0.5 * (1 + math.cos(math.pi * min((progress - warmup) / max(1 - warmup, 1e-9), 1.0)))
