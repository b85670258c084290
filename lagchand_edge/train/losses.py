"""IntagHand's losses (paper §3.4, eqs. 11-14), the compact module's heatmap loss, and an optional protocol-aligned 3D term."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lagchand_edge.errors import UserError
from lagchand_edge.hand.joints import MIDDLE_MCP
from lagchand_edge.train.targets import metacarpal_length

#: IntagHand's weights (DESIGN.md §0); the edge term joins from mid-training. `aligned` is ours and
#: off by default: the 3D L1 in the frame the evaluation protocol scores (see `aligned_loss`).
DEFAULT_WEIGHTS = {"vertex": 100.0, "vertex_2d": 50.0, "joint": 100.0, "joint_2d": 50.0, "normal": 10.0, "edge": 2000.0, "heatmap": 100.0,
                   "aligned": 0.0, "heatmap_2d": 0.0}

#: Sharpness of the soft-argmax that reads 2D joints off the heatmaps (`heatmap_2d`).
SOFT_ARGMAX_BETA = 10.0

#: Bounds on the per-hand rescale in `aligned_loss`, so that a collapsed predicted bone cannot blow it up.
ALIGN_SCALE_RANGE = (1 / 3, 3.0)


def parse_weights(overrides: list[str]) -> dict[str, float]:
    """DEFAULT_WEIGHTS with `name=value` overrides applied (a user's typo is a clear error)."""
    weights = dict(DEFAULT_WEIGHTS)
    for item in overrides:
        name, _, value = item.partition("=")
        if name not in weights:
            raise UserError(f"unknown loss {name!r} in --loss-weight {item!r}; choose one of {', '.join(weights)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise UserError(f"--loss-weight {item!r}: expected NAME=NUMBER") from None
    return weights


def vertex_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Eq. (11)/(12) 3D part: mean L1 over points and coordinates."""
    return (pred - gt).abs().mean()


def projection_loss(pred_2d: torch.Tensor, gt_2d: torch.Tensor) -> torch.Tensor:
    """Eq. (11)/(12) 2D part: mean squared error of projections (image-size units)."""
    return ((pred_2d - gt_2d) ** 2).sum(-1).mean()


def _edges(vertices: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    v0, v1, v2 = (vertices[..., faces[:, i], :] for i in range(3))
    return v1 - v0, v2 - v1, v0 - v2


def normal_loss(pred: torch.Tensor, gt: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Eq. (13): |e_pred . n_GT| over the three edges of every face (unit GT normals)."""
    g = _edges(gt, faces)
    normal = torch.linalg.cross(g[0], -g[2], dim=-1)
    normal = normal / torch.linalg.vector_norm(normal, dim=-1, keepdim=True).clamp_min(1e-12)
    p = _edges(pred, faces)
    return torch.stack([(e * normal).sum(-1).abs() for e in p]).mean()


def edge_loss(pred: torch.Tensor, gt: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Eq. (14): L1 difference of every edge's length between prediction and GT."""
    lengths = lambda v: torch.stack([torch.linalg.vector_norm(e, dim=-1) for e in _edges(v, faces)])  # noqa: E731
    return (lengths(pred) - lengths(gt)).abs().mean()


def aligned_loss(pred_joints: torch.Tensor, pred_vertices: torch.Tensor, gt_joints: torch.Tensor, gt_vertices: torch.Tensor) -> torch.Tensor:
    """Mean of the joint and vertex L1 after the protocol's per-hand alignment (`metrics.align_to_gt`).

    Each predicted hand (..., 21, 3) / (..., V, 3) is re-rooted at its middle MCP and rescaled so its
    wrist->middle-MCP bone matches GT's (targets are MCP-rooted already). The plain L1 terms reward
    shrinking the hand while its pose is uncertain, and the protocol's rescale magnifies whatever
    error remains; this term trains shape and pose in the scored frame, blind to scale (the edge and
    plain terms hold the scale).
    """
    scale = (metacarpal_length(gt_joints) / metacarpal_length(pred_joints).clamp_min(1e-6)).clamp(*ALIGN_SCALE_RANGE)[..., None, None]
    root = pred_joints[..., MIDDLE_MCP : MIDDLE_MCP + 1, :]
    return (vertex_loss((pred_joints - root) * scale, gt_joints) + vertex_loss((pred_vertices - root) * scale, gt_vertices)) / 2


def heatmap_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    return ((pred - gt) ** 2).mean()


def soft_argmax(heatmaps: torch.Tensor, beta: float = SOFT_ARGMAX_BETA) -> torch.Tensor:
    """(..., H, W) maps -> (..., 2) expected (x, y) under softmax(beta * map), in units of the map size."""
    h, w = heatmaps.shape[-2:]
    weights = torch.softmax(beta * heatmaps.flatten(-2), dim=-1).reshape(heatmaps.shape)
    xs = (torch.arange(w, dtype=weights.dtype, device=weights.device) + 0.5) / w
    ys = (torch.arange(h, dtype=weights.dtype, device=weights.device) + 0.5) / h
    return torch.stack([(weights.sum(-2) * xs).sum(-1), (weights.sum(-1) * ys).sum(-1)], dim=-1)


def heatmap_2d_loss(heatmaps: torch.Tensor, gt_2d: torch.Tensor) -> torch.Tensor:
    """Integral regression (ours, off by default): L1 between the heatmaps' soft-argmax and the GT 2D
    joints (image-size units). Unlike the MSE to Gaussians, every pixel gets a gradient that moves
    the mass towards the joint, so the encoder leaves the all-zero plateau early."""
    return (soft_argmax(heatmaps) - gt_2d).abs().mean()


@dataclass
class LossTerms:
    terms: dict[str, torch.Tensor]
    total: torch.Tensor


def total_loss(pred: dict[str, torch.Tensor], gt: dict[str, torch.Tensor], faces: torch.Tensor, weights: dict[str, float]) -> LossTerms:
    """Weighted sum of every term; a weight of 0 skips its term."""
    calculators = {
        "vertex": lambda: vertex_loss(pred["vertices"], gt["vertices"]),
        "vertex_2d": lambda: projection_loss(pred["vertices_2d"], gt["vertices_2d"]),
        "joint": lambda: vertex_loss(pred["joints"], gt["joints"]),
        "joint_2d": lambda: projection_loss(pred["joints_2d"], gt["joints_2d"]),
        "normal": lambda: normal_loss(pred["vertices"], gt["vertices"], faces),
        "edge": lambda: edge_loss(pred["vertices"], gt["vertices"], faces),
        "heatmap": lambda: heatmap_loss(pred["heatmaps"], gt["heatmaps"]),
        "aligned": lambda: aligned_loss(pred["joints"], pred["vertices"], gt["joints"], gt["vertices"]),
        "heatmap_2d": lambda: heatmap_2d_loss(pred["heatmaps"], gt["joints_2d"]),
    }
    terms = {name: fn() for name, fn in calculators.items() if weights.get(name, 0.0) > 0}
    total = sum(weights[name] * value for name, value in terms.items())
    return LossTerms(terms, total)
