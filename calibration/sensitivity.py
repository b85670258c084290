"""Per-layer int8 sensitivity on the PT2E graph: which modules to keep in float.

For each module of a fixed list (the model's natural blocks), two PT2E programs are calibrated
and run in PyTorch (quantize/dequantize simulated exactly as XNNPACK's int8 scheme): only this
module int8, and everything int8 except this module. Modules are ranked by the drift they cause
alone; the second number says how much keeping that one module in float would recover.
`convert --precision int8 --keep-float A,B` then keeps the chosen ones in float.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch

from lagchand_edge.metrics import align_to_gt, aligned_errors
from lagchand_edge.model import DeployModel, HandPrediction, LAGCHand

#: The model's blocks, as DeployModel names them (each is a valid --keep-float name).
SENSITIVITY_MODULES = (
    [f"model.encoder.layers.{i}" for i in range(5)]
    + [f"model.compact.{name}" for name in ("top", "up16", "up32", "up64", "squeeze", "global_fc", "hand_fc", "bound")]
    + ["model.graph.init"] + [f"model.graph.blocks.{i}" for i in range(3)] + ["model.graph.widen", "model.graph.head", "model.camera_head"]
)


def _scores(prediction: HandPrediction, reference: HandPrediction, gt_joints: np.ndarray, reference_mpjpe: float) -> tuple[float, float]:
    """(mean joint drift vs FP32, |ΔMPJPE| vs GT), both mm in the protocol's frame."""
    pred, _ = align_to_gt(prediction.joints, gt_joints)
    ref, _ = align_to_gt(reference.joints, gt_joints)
    drift = float(np.linalg.norm(pred - ref, axis=-1).mean())
    mpjpe = float(aligned_errors(prediction.joints, gt_joints)[0].mean())
    return drift, abs(mpjpe - reference_mpjpe)


def layer_sensitivity(model: LAGCHand, calibration: torch.Tensor, images: torch.Tensor, gt_joints: np.ndarray,
                      modules: tuple[str, ...] | list[str] = SENSITIVITY_MODULES, progress: Callable[[int], None] | None = None) -> dict:
    """Rank `modules` by the int8 drift each causes; `images` (N,3,H,W) with GT joints (N,2,21,3) mm."""
    from calibration.plans import Int8Plan
    from converters.executorch import quantizable_graph, quantize_pt2e

    deploy = DeployModel(model).eval()
    graph = quantizable_graph(deploy, images[:1].contiguous())  # the graph `convert` quantizes (SiLUs split, as deployed)
    with torch.no_grad():
        reference = HandPrediction.from_outputs(deploy(images))
    reference_mpjpe = float(aligned_errors(reference.joints, gt_joints)[0].mean())

    def score(**selection) -> tuple[float, float]:
        quantized = quantize_pt2e(copy.deepcopy(graph), calibration, **selection)
        with torch.no_grad():  # the exported program has the deployed static shape: batch 1
            outputs = [quantized(image[None]) for image in images]
            prediction = HandPrediction.from_outputs([torch.cat(parts) for parts in zip(*outputs, strict=True)])
        if progress:
            progress(1)
        return _scores(prediction, reference, gt_joints, reference_mpjpe)

    everything = score(plan=Int8Plan())
    ranking = []
    for name in modules:
        only_drift, only_delta = score(plan=Int8Plan(static=(name,)))
        rest_drift, rest_delta = score(plan=Int8Plan(keep_float=(name,)))
        ranking.append({"module": name, "only_this_int8_mm": only_drift, "only_this_delta_mpjpe_mm": only_delta,
                        "all_but_this_int8_mm": rest_drift, "all_but_this_delta_mpjpe_mm": rest_delta})
    ranking.sort(key=lambda r: -r["only_this_int8_mm"])
    return {"samples": len(images), "calibration_samples": len(calibration), "scheme": "XNNPACKQuantizer int8 (PT2E, simulated in PyTorch)",
            "all_int8_mm": everything[0], "all_int8_delta_mpjpe_mm": everything[1], "reference_mpjpe_mm": reference_mpjpe,
            "metric": "mean joint distance to FP32 after the protocol's alignment (mm)", "ranking": ranking}
