"""Evaluation of the FP32 model (or a constant mean-pose baseline) with IntagHand's protocol."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lagchand_edge.data.interhand import InterHandDataset, SampleError, collate
from lagchand_edge.data.transforms import to_model_input
from lagchand_edge.distributed import reference_device
from lagchand_edge.errors import UserError
from lagchand_edge.metrics import aligned_errors, procrustes_aligned, rotation_error_deg, summarize
from lagchand_edge.model import DeployModel, HandPrediction, LAGCHand
from lagchand_edge.train.targets import normalise_hands


@dataclass
class SampleErrors:
    """The protocol's errors per sample (mm): what `score` summarises, and all that torchrun's ranks
    send to rank 0 (a few hundred bytes a sample, not the predicted meshes)."""

    joint: np.ndarray  # (N, 2, 21) after root alignment and bone rescaling
    pa_joint: np.ndarray  # (N, 2, 21) after Procrustes
    rotation_deg: np.ndarray  # (N, 2)
    valid: np.ndarray  # (N, 2, 21)
    vertex_mean: np.ndarray | None  # (N, 2) mean vertex error per hand, when the data has meshes
    joint_2d_px: np.ndarray | None  # valid joints' 2D errors in the crop, when the predictor has a camera


def sample_errors(
    model: LAGCHand | Callable, dataset: InterHandDataset, indices: range | None = None, batch_size: int = 16,
    device: torch.device | None = None, progress: Callable[[int], None] | None = None,
) -> SampleErrors:
    """Run `model` over the dataset's samples `indices` (all by default) and keep each one's errors."""
    device = device or reference_device()
    if isinstance(model, LAGCHand):
        model = DeployModel(model.to(device), deployed_form=False).eval()  # no training heatmaps
    subset = dataset if indices is None else torch.utils.data.Subset(dataset, indices)
    parts: dict[str, list[np.ndarray]] = {key: [] for key in ("joint", "pa_joint", "rotation_deg", "valid", "vertex_mean", "joint_2d_px")}
    with torch.no_grad():
        for batch in torch.utils.data.DataLoader(subset, batch_size, shuffle=False, collate_fn=collate):
            if batch is None:
                continue
            images = to_model_input(batch["image"]).to(device)
            outputs = model(images)
            vertices, joints = (o.cpu().numpy() for o in outputs[:2])
            gt_joints, valid = batch["joints_cam"].numpy(), batch["joint_valid"].numpy()
            joint_err, vertex_err = aligned_errors(joints, gt_joints, vertices, batch["vertices_cam"].numpy() if dataset.has_mesh else None)
            pred, gt = np.asarray(joints, np.float64), np.asarray(gt_joints, np.float64)
            parts["joint"].append(joint_err)
            parts["pa_joint"].append(np.linalg.norm(procrustes_aligned(pred, gt) - gt, axis=-1))
            parts["rotation_deg"].append(rotation_error_deg(pred, gt))
            parts["valid"].append(valid)
            if vertex_err is not None:
                parts["vertex_mean"].append(vertex_err.mean(-1))
            if len(outputs) > 2:  # a camera: the predicted joints in the crop
                joints_2d = HandPrediction.from_outputs(outputs).project(images.shape[-1])[0]
                parts["joint_2d_px"].append(np.linalg.norm(joints_2d - batch["joints_2d"].numpy(), axis=-1)[valid])
            if progress:
                progress(len(images))
    if not parts["joint"]:
        raise UserError("no sample of the data set could be read")
    return SampleErrors(**{key: np.concatenate(values) if values else None for key, values in parts.items()})


def score(parts: list[SampleErrors]) -> dict:
    """MPJPE/MPVPE (mm) per hand and per joint, PA-MPJPE, median rotation and 2D errors, over
    the samples of every part (torchrun's ranks' parts in rank order give one process's numbers)."""

    def joined(key: str) -> np.ndarray | None:
        values = [getattr(part, key) for part in parts]
        return None if values[0] is None else np.concatenate(values)

    vertex_mean = joined("vertex_mean")
    metrics = summarize(joined("joint"), None if vertex_mean is None else vertex_mean[..., None], joined("valid"), joined("pa_joint"),
                        joined("rotation_deg"))
    joint_2d = joined("joint_2d_px")
    if joint_2d is not None:
        metrics["joint_2d_err_px_median"] = float(np.median(joint_2d))
    return metrics


def evaluate_model(
    model: LAGCHand | Callable, dataset: InterHandDataset, batch_size: int = 16, device: torch.device | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """MPJPE/MPVPE (mm) of `model` over the dataset; per hand and per joint."""
    device = device or reference_device()
    return score([sample_errors(model, dataset, None, batch_size, device, progress)]) | {"device": str(device)}


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
