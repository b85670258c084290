"""Validation during training: the scored metrics on a held-out set after every epoch."""

from __future__ import annotations

from pathlib import Path

import torch

from lagchand_edge.data.cache import open_dataset
from lagchand_edge.evaluate import MeanPoseBaseline, evaluate_model, mean_hands


class Validator:
    """MPJPE, its ratio to the training data's mean-pose baseline, rotation and 2D errors on a held-out set.

    The mean hands are computed once and serve two uses: the baseline the ratio divides by, and
    the template a model trained from scratch starts at.
    """

    mean_hands = staticmethod(mean_hands)

    def __init__(self, root: Path, train_set, num: int, mano_dir: Path | None = None, split: str = "val") -> None:
        self.dataset = open_dataset(root, split, mano_dir, limit=num)
        self.mean_joints, self.mean_vertices = mean_hands(train_set)
        baseline = MeanPoseBaseline(self.mean_joints, self.mean_vertices)
        self.baseline_mpjpe = evaluate_model(baseline, self.dataset, device=torch.device("cpu"))["mpjpe"]

    def __call__(self, model) -> dict[str, float]:
        metrics = evaluate_model(model, self.dataset, device=next(model.parameters()).device)  # where it trains, TF32 as it trains
        return {"val_mpjpe": round(metrics["mpjpe"], 3), "val_ratio": round(metrics["mpjpe"] / self.baseline_mpjpe, 4),
                "val_rotation_deg": round(metrics["rotation_error_deg_median"], 2),
                "val_joint_2d_px": round(metrics.get("joint_2d_err_px_median", float("nan")), 2)}
