"""Evaluation of the FP32 model (or a constant mean-pose baseline) with IntagHand's protocol."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from lagchand_edge.data.interhand import InterHandDataset, SampleError, collate
from lagchand_edge.data.transforms import to_model_input
from lagchand_edge.metrics import evaluate_hands
from lagchand_edge.model import DeployModel, HandPrediction, LAGCHand
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
        model = DeployModel(model.to(device), deployed_form=False).eval()  # no training heatmaps
    pred_j, pred_v, gt_j, gt_v, valid, errors_2d = [], [], [], [], [], []
    with torch.no_grad():
        for batch in _batches(dataset, batch_size):
            images = to_model_input(batch["image"]).to(device)
            outputs = model(images)
            vertices, joints = outputs[:2]
            pred_j.append(joints.cpu().numpy())
            pred_v.append(vertices.cpu().numpy())
            gt_j.append(batch["joints_cam"].numpy())
            gt_v.append(batch["vertices_cam"].numpy())
            valid.append(batch["joint_valid"].numpy())
            if len(outputs) > 2:  # a camera: the predicted joints in the crop
                joints_2d = HandPrediction.from_outputs(outputs).project(images.shape[-1])[0]
                errors_2d.append(np.linalg.norm(joints_2d - batch["joints_2d"].numpy(), axis=-1)[valid[-1]])
            if progress:
                progress(len(images))
    gt_vertices = np.concatenate(gt_v) if dataset.has_mesh else None
    metrics = evaluate_hands(np.concatenate(pred_j), np.concatenate(gt_j), np.concatenate(pred_v), gt_vertices, np.concatenate(valid))
    if errors_2d:
        metrics["joint_2d_err_px_median"] = float(np.median(np.concatenate(errors_2d)))
    metrics["device"] = str(device)
    return metrics


def mean_hands(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """A (training) set's mean normalised joints (2, 21, 3) and vertices (2, V, 3), from its annotations."""
    sum_j, sum_v, count = 0.0, 0.0, 0
    for index in range(len(dataset)):
        try:
            sample = dataset.load(index, with_image=False)
        except SampleError:
            continue
        joints, vertices = normalise_hands(torch.as_tensor(sample["joints_cam"][None], dtype=torch.float64),
                                           torch.as_tensor(sample["vertices_cam"][None], dtype=torch.float64))
        sum_j, sum_v, count = sum_j + joints[0], sum_v + vertices[0], count + 1
    return (sum_j / count).float(), (sum_v / count).float()


class MeanPoseBaseline:
    """Predicts the same (training-set mean) hands for every image."""

    def __init__(self, joints: torch.Tensor, vertices: torch.Tensor) -> None:
        self.joints, self.vertices = joints, vertices

    def __call__(self, images: torch.Tensor):
        b = images.shape[0]
        return self.vertices.expand(b, *self.vertices.shape), self.joints.expand(b, *self.joints.shape)
