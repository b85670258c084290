"""Training-time augmentation on whole batches (torch), the same for a data root and a cache.

A horizontal flip swaps the hands (a mirrored right hand is a left hand: both hand models are
mirror images, vertex for vertex), a crop jitter moves and scales the crop as a detector's box
would, and a colour jitter varies gain and offset. Targets move with the pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CROP_SCALE = (0.9, 1.1)  # > 1 zooms out
CROP_SHIFT = 0.05  # of the image size
COLOUR_GAIN, COLOUR_OFFSET = (0.75, 1.25), 0.08


def _flip(images: torch.Tensor, batch: dict[str, torch.Tensor], mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    size = images.shape[-1]
    images = torch.where(mask[:, None, None, None], images.flip(-1), images)
    out = dict(batch)
    for key in ("joints_2d", "vertices_2d", "joints_cam", "vertices_cam"):
        value = batch[key].clone()
        mirrored = value.flip(1)  # hand axis: the mirrored right hand is the new left
        if key.endswith("_2d"):
            mirrored[..., 0] = size - mirrored[..., 0]
        else:
            mirrored[..., 0] = -mirrored[..., 0]
        out[key] = torch.where(mask.reshape(-1, *[1] * (value.dim() - 1)), mirrored, value)
    out["joint_valid"] = torch.where(mask[:, None, None], batch["joint_valid"].flip(1), batch["joint_valid"])
    return images, out


def _jitter_crop(images: torch.Tensor, batch: dict[str, torch.Tensor], rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    b, size, device = images.shape[0], images.shape[-1], images.device
    scale = torch.as_tensor(rng.uniform(*CROP_SCALE, b), dtype=torch.float32, device=device)
    shift = torch.as_tensor(rng.uniform(-CROP_SHIFT, CROP_SHIFT, (b, 2)), dtype=torch.float32, device=device)
    theta = torch.zeros(b, 2, 3, device=device)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, :, 2] = 2 * shift  # normalised coordinates span 2
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = dict(batch)
    centre = size / 2
    for key in ("joints_2d", "vertices_2d"):
        shape = (-1,) + (1,) * (batch[key].dim() - 2) + (2,)
        out[key] = centre + (batch[key] - centre - shift.reshape(shape) * size) / scale.reshape(shape[:-1] + (1,))
    return images, out


def augment(images: torch.Tensor, batch: dict[str, torch.Tensor], rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(B, 3, H, W) images in [0, 1] and the batch's per-hand arrays, flipped, re-cropped and re-coloured
    where they are (on a GPU the random draws alone come from the CPU)."""
    b, device = images.shape[0], images.device
    images, batch = _flip(images, batch, torch.as_tensor(rng.uniform(size=b) < 0.5, device=device))
    images, batch = _jitter_crop(images, batch, rng)
    gain = torch.as_tensor(rng.uniform(*COLOUR_GAIN, (b, 3, 1, 1)), dtype=torch.float32, device=device)
    offset = torch.as_tensor(rng.uniform(-COLOUR_OFFSET, COLOUR_OFFSET, (b, 1, 1, 1)), dtype=torch.float32, device=device)
    return (images * gain + offset).clamp(0, 1), batch
