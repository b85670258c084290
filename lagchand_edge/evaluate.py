"""Evaluation of the FP32 model (or a constant mean-pose baseline) with IntagHand's protocol."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from lagchand_edge.data.interhand import InterHandDataset, collate
from lagchand_edge.data.transforms import to_model_input
from lagchand_edge.metrics import evaluate_hands
from lagchand_edge.model import DeployModel, LAGCHand
from lagchand_edge.train.targets import normalise_hands


def best_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _batches(dataset: InterHandDataset, batch_size: int):
    loader = torch.utils.data.DataLoader(dataset, batch_size, shuffle=False, collate_fn=collate)
    for batch in loader:
        if batch is not None:
            yield batch


def evaluate_model(
    model: LAGCHand | Callable, dataset: InterHandDataset, batch_size: int = 16, device: torch.device | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """MPJPE/MPVPE (mm) of `model` over the dataset; per hand and per joint."""
    device = device or best_device()
    if isinstance(model, LAGCHand):
        model = DeployModel(model.to(device)).eval()  # no training heatmaps
    pred_j, pred_v, gt_j, gt_v, valid = [], [], [], [], []
    with torch.no_grad():
        for batch in _batches(dataset, batch_size):
            images = to_model_input(batch["image"]).to(device)
            vertices, joints = model(images)[:2]
            pred_j.append(joints.cpu().numpy())
            pred_v.append(vertices.cpu().numpy())
            gt_j.append(batch["joints_cam"].numpy())
            gt_v.append(batch["vertices_cam"].numpy())
            valid.append(batch["joint_valid"].numpy())
            if progress:
                progress(len(images))
    gt_vertices = np.concatenate(gt_v) if dataset.has_mesh else None
    metrics = evaluate_hands(np.concatenate(pred_j), np.concatenate(gt_j), np.concatenate(pred_v), gt_vertices, np.concatenate(valid))
    metrics["device"] = str(device)
    return metrics


def mean_hands(dataset: InterHandDataset, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """The training set's mean normalised joints (2, 21, 3) and vertices (2, V, 3)."""
    sum_j, sum_v, count = 0.0, 0.0, 0
    for batch in _batches(dataset, batch_size):
        joints, vertices = normalise_hands(batch["joints_cam"].double(), batch["vertices_cam"].double())
        sum_j, sum_v, count = sum_j + joints.sum(0), sum_v + vertices.sum(0), count + len(joints)
    return (sum_j / count).float(), (sum_v / count).float()


class MeanPoseBaseline:
    """Predicts the same (training-set mean) hands for every image."""

    def __init__(self, joints: torch.Tensor, vertices: torch.Tensor) -> None:
        self.joints, self.vertices = joints, vertices

    def __call__(self, images: torch.Tensor):
        b = images.shape[0]
        return self.vertices.expand(b, *self.vertices.shape), self.joints.expand(b, *self.joints.shape)
