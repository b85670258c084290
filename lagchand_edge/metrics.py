"""MPJPE / MPVPE / PA-MPJPE in mm with IntagHand's evaluation protocol (DESIGN.md §0).

Per hand: joints (and vertices) are root-aligned at the middle-finger MCP (or the wrist, the
release's own convention), the prediction is rescaled by |mcp - wrist|_GT / |mcp - wrist|_pred,
and errors are L2 distances in mm. "all" is the mean of both hands.
"""

from __future__ import annotations

import numpy as np

from lagchand_edge.hand.joints import HAND_NAMES, MIDDLE_MCP, WRIST, root_index


def _bone(joints: np.ndarray) -> np.ndarray:
    return np.linalg.norm(joints[..., MIDDLE_MCP, :] - joints[..., WRIST, :], axis=-1)


def align_to_gt(
    pred_joints: np.ndarray, gt_joints: np.ndarray, pred_vertices: np.ndarray | None = None, root: str = "mcp", rescale: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions in the frame the protocol compares them in: root-relative, rescaled to GT's bone (GT units).

    Arrays are (..., 21, 3) / (..., V, 3); any leading shape (batch, hand) is kept.
    """
    r = root_index(root)
    pred_joints = np.asarray(pred_joints, np.float64)
    gt_joints = np.asarray(gt_joints, np.float64)
    scale = _bone(gt_joints) / np.maximum(_bone(pred_joints), 1e-12) if rescale else np.ones(gt_joints.shape[:-2])
    scale = scale[..., None, None]
    pred_root = pred_joints[..., r : r + 1, :]
    joints = (pred_joints - pred_root) * scale
    vertices = None if pred_vertices is None else (np.asarray(pred_vertices, np.float64) - pred_root) * scale
    return joints, vertices


def aligned_errors(
    pred_joints: np.ndarray,
    gt_joints: np.ndarray,
    pred_vertices: np.ndarray | None = None,
    gt_vertices: np.ndarray | None = None,
    root: str = "mcp",
    rescale: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-joint (..., 21) and per-vertex (..., V) errors in GT units after alignment."""
    r = root_index(root)
    gt_joints = np.asarray(gt_joints, np.float64)
    gt_root = gt_joints[..., r : r + 1, :]
    joints, vertices = align_to_gt(pred_joints, gt_joints, pred_vertices, root, rescale)
    joint_err = np.linalg.norm(joints - (gt_joints - gt_root), axis=-1)
    vert_err = None
    if vertices is not None and gt_vertices is not None and np.shape(gt_vertices)[-2] > 0:
        vert_err = np.linalg.norm(vertices - (np.asarray(gt_vertices, np.float64) - gt_root), axis=-1)
    return joint_err, vert_err


def _similarity_fit(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Umeyama's best similarity transform of `pred` (..., N, 3) onto `gt`: scale, rotation
    (applied as `p @ rot`) and both centroids."""
    mu_p, mu_g = pred.mean(-2, keepdims=True), gt.mean(-2, keepdims=True)
    p, g = pred - mu_p, gt - mu_g
    u, s, vt = np.linalg.svd(np.swapaxes(p, -1, -2) @ g)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.ones_like(s)
    fix[..., -1] = d
    rot = u @ (fix[..., :, None] * vt)
    scale = (s * fix).sum(-1) / np.maximum((p**2).sum((-1, -2)), 1e-12)
    return scale, rot, mu_p, mu_g


def procrustes_aligned(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """`pred` (..., N, 3) moved onto `gt` by the best similarity transform (Umeyama)."""
    scale, rot, mu_p, mu_g = _similarity_fit(pred, gt)
    return scale[..., None, None] * (pred - mu_p) @ rot + mu_g


def rotation_error_deg(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Angle (degrees) of the rotation Procrustes needs to bring each `pred` hand onto `gt`:
    the global-orientation part of the error, which PA-MPJPE leaves out and MPJPE mixes in."""
    rot = _similarity_fit(pred, gt)[1]
    cosine = (np.trace(rot, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def summarize(
    joint_err: np.ndarray,
    vert_err: np.ndarray | None = None,
    joint_valid: np.ndarray | None = None,
    pa_joint_err: np.ndarray | None = None,
    rotation_deg: np.ndarray | None = None,
) -> dict[str, float | list[float] | int]:
    """Means over samples of (N, 2, 21) joint and (N, 2, V) vertex errors; masked by validity.
    `rotation_deg` (N, 2) is summarised by its median (its distribution has a heavy tail of flips)."""
    valid = np.ones(joint_err.shape, bool) if joint_valid is None else np.asarray(joint_valid, bool)
    out: dict[str, float | list[float] | int] = {"samples": int(joint_err.shape[0])}

    def masked_mean(err: np.ndarray, mask: np.ndarray, axis=None) -> np.ndarray:
        return (err * mask).sum(axis) / np.maximum(mask.sum(axis), 1)

    per_hand = [float(masked_mean(joint_err[:, h], valid[:, h])) for h in range(2)]
    out["mpjpe"] = float(np.mean(per_hand))
    for h, side in enumerate(HAND_NAMES):
        out[f"mpjpe_{side}"] = per_hand[h]
    out["per_joint"] = masked_mean(joint_err, valid, axis=(0, 1)).round(4).tolist()
    if pa_joint_err is not None:
        out["pa_mpjpe"] = float(np.mean([masked_mean(pa_joint_err[:, h], valid[:, h]) for h in range(2)]))
    if rotation_deg is not None:
        out["rotation_error_deg_median"] = float(np.median(rotation_deg))
    if vert_err is not None:
        per_hand_v = [float(vert_err[:, h].mean()) for h in range(2)]
        out["mpvpe"] = float(np.mean(per_hand_v))
        for h, side in enumerate(HAND_NAMES):
            out[f"mpvpe_{side}"] = per_hand_v[h]
    return out


def evaluate_hands(pred_joints, gt_joints, pred_vertices=None, gt_vertices=None, joint_valid=None, root: str = "mcp"):
    """All metrics for (N, 2, 21, 3) predictions against GT (mm), IntagHand's protocol."""
    joint_err, vert_err = aligned_errors(pred_joints, gt_joints, pred_vertices, gt_vertices, root)
    pred, gt = np.asarray(pred_joints, np.float64), np.asarray(gt_joints, np.float64)
    pa = np.linalg.norm(procrustes_aligned(pred, gt) - gt, axis=-1)
    return summarize(joint_err, vert_err, joint_valid, pa, rotation_error_deg(pred, gt))
