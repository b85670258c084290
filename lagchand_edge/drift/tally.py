"""Streaming tallies of accuracy (vs ground truth) and drift (vs the FP32 reference).

Sums are kept as Python integers in fixed point (errors in nanometres, squares in 1e-8 mm^2):
integer addition is associative, so shards merged in any grouping give exactly the numbers of
one process. Per-sample drift values are kept as a list (one float per sample: bounded, tiny);
percentiles and means are taken over the sorted list, which is the same for any sharding.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from lagchand_edge.hand.joints import HAND_NAMES, MIDDLE_MCP
from lagchand_edge.metrics import align_to_gt
from lagchand_edge.model import OUTPUT_NAMES, HandPrediction

NM_PER_MM = 1_000_000
SQUARE_UNIT = 1e-8  # mm^2 per integer unit of the SNR sums


#: Errors beyond this (or not finite: an artifact that overflowed) are counted as this many mm.
ERROR_CAP_MM = 1e12


def fixed_sum(values: np.ndarray, axis=None, unit: float = 1 / NM_PER_MM) -> np.ndarray | int:
    """Sum of `values / unit` rounded to integers per element: exact, order-free accumulation.

    Python integers (no overflow) whenever int64 partial sums could overflow.
    """
    scaled = np.rint(np.nan_to_num(np.asarray(values, np.float64), nan=ERROR_CAP_MM, posinf=ERROR_CAP_MM, neginf=-ERROR_CAP_MM)
                     .clip(-ERROR_CAP_MM, ERROR_CAP_MM) / unit)
    if np.abs(scaled).max(initial=0.0) * max(scaled.size, 1) < 2**62:
        total = scaled.astype(np.int64).sum(axis=axis)
    else:
        total = np.vectorize(int, otypes=[object])(scaled).sum(axis=axis)
    return int(total) if np.ndim(total) == 0 else np.asarray(total).astype(object)


def _add(a, b):
    return b if a is None else a + b


@dataclass
class Aligned:
    """One predictor's batch in the protocol's frame (GT mm, root-relative), plus its raw outputs."""

    joints: np.ndarray  # (B, 2, 21, 3)
    vertices: np.ndarray  # (B, 2, V, 3)
    raw: HandPrediction

    @classmethod
    def of(cls, prediction: HandPrediction, gt_joints: np.ndarray) -> Aligned:
        joints, vertices = align_to_gt(prediction.joints, gt_joints, prediction.vertices)
        return cls(joints, vertices, prediction)


@dataclass
class AccuracyTally:
    """MPJPE / MPVPE against ground truth (IntagHand protocol), per hand and per joint."""

    joint_sum: np.ndarray | None = None  # (2, 21) nm, object ints
    joint_count: np.ndarray | None = None  # (2, 21)
    vertex_sum: np.ndarray | None = None  # (2,) nm
    vertex_count: np.ndarray | None = None  # (2,)

    def update(self, pred: Aligned, gt_joints: np.ndarray, gt_vertices: np.ndarray | None, valid: np.ndarray) -> None:
        gt_root = gt_joints[..., MIDDLE_MCP : MIDDLE_MCP + 1, :].astype(np.float64)
        err = np.linalg.norm(pred.joints - (gt_joints - gt_root), axis=-1)
        self.joint_sum = _add(self.joint_sum, fixed_sum(err * valid, axis=0))
        self.joint_count = _add(self.joint_count, valid.sum(0).astype(object))
        if gt_vertices is not None and gt_vertices.shape[-2] > 0:
            verr = np.linalg.norm(pred.vertices - (gt_vertices - gt_root), axis=-1)
            self.vertex_sum = _add(self.vertex_sum, fixed_sum(verr, axis=(0, 2)))
            self.vertex_count = _add(self.vertex_count, np.full(2, verr.shape[0] * verr.shape[2], dtype=object))

    def merge(self, other: AccuracyTally) -> None:
        for name in ("joint_sum", "joint_count", "vertex_sum", "vertex_count"):
            if getattr(other, name) is not None:
                setattr(self, name, _add(getattr(self, name), getattr(other, name)))

    def summary(self) -> dict:
        if self.joint_sum is None:
            return {}
        per_hand = [int(self.joint_sum[h].sum()) / max(int(self.joint_count[h].sum()), 1) / NM_PER_MM for h in range(2)]
        out = {"mpjpe": float(np.mean(per_hand)), **{f"mpjpe_{s}": per_hand[h] for h, s in enumerate(HAND_NAMES)}}
        joints = self.joint_sum.sum(0) / np.maximum(self.joint_count.sum(0), 1)
        out["per_joint"] = [round(float(v) / NM_PER_MM, 4) for v in joints]
        if self.vertex_sum is not None:
            per_hand_v = [int(self.vertex_sum[h]) / int(self.vertex_count[h]) / NM_PER_MM for h in range(2)]
            out |= {"mpvpe": float(np.mean(per_hand_v)), **{f"mpvpe_{s}": per_hand_v[h] for h, s in enumerate(HAND_NAMES)}}
        return out

    def state(self) -> dict:
        return {k: None if v is None else v.tolist() for k, v in vars(self).items()}

    @classmethod
    def from_state(cls, state: dict) -> AccuracyTally:
        return cls(**{k: None if v is None else np.array(v, dtype=object) for k, v in state.items()})


@dataclass
class WorstSample:
    drift_mm: float
    index: int
    sample_id: str
    image: np.ndarray  # (256, 256, 3) uint8
    reference_2d: tuple[np.ndarray, np.ndarray]  # joints (2, 21, 2), vertices (2, V, 2) in the crop
    artifact_2d: tuple[np.ndarray, np.ndarray]
    truth_2d: np.ndarray | None = None  # ground-truth joints (2, 21, 2) in the crop, NaN where not valid

    def __lt__(self, other: WorstSample) -> bool:  # heap order: smallest drift first, ties by sample
        return (self.drift_mm, -self.index) < (other.drift_mm, -other.index)


@dataclass
class DriftTally:
    """How far an artifact's outputs are from the FP32 reference's on the same images."""

    worst_k: int = 4
    vertex_drift: list[float] = field(default_factory=list)  # per sample, mean over both hands' vertices, normalised mm
    joint_sum: np.ndarray | None = None  # (21,) nm, summed over hands and samples
    joint_count: int = 0
    signal: dict[str, int] = field(default_factory=dict)  # per output tensor, sum of ref^2 (SQUARE_UNIT)
    noise: dict[str, int] = field(default_factory=dict)  # sum of (artifact - ref)^2
    worst: list[WorstSample] = field(default_factory=list)

    def update(self, pred: Aligned, ref: Aligned, start_index: int, sample_ids: list[str], images: np.ndarray,
               truth_2d: np.ndarray | None = None) -> None:
        # Distances between the raw outputs (root-relative, normalised metres -> mm), as the parity
        # check measures them: the protocol's GT rescaling would amplify a drifted bone length.
        pv, rv = pred.raw.vertices * 1000.0, ref.raw.vertices * 1000.0
        pj, rj = pred.raw.joints * 1000.0, ref.raw.joints * 1000.0
        per_sample = np.linalg.norm(pv - rv, axis=-1).mean(axis=(1, 2)) if pv.shape[-2] else np.linalg.norm(pj - rj, axis=-1).mean(axis=(1, 2))
        per_sample = np.nan_to_num(per_sample, nan=ERROR_CAP_MM, posinf=ERROR_CAP_MM)
        self.vertex_drift.extend(float(v) for v in per_sample)
        joint = np.linalg.norm(pj.astype(np.float64) - rj, axis=-1)  # (B, 2, 21)
        self.joint_sum = _add(self.joint_sum, fixed_sum(joint, axis=(0, 1)))
        self.joint_count += joint.shape[0] * joint.shape[1]
        for name in OUTPUT_NAMES:
            a, r = getattr(pred.raw, name) * 1000.0, getattr(ref.raw, name) * 1000.0
            self.signal[name] = self.signal.get(name, 0) + fixed_sum(r * r, unit=SQUARE_UNIT)
            self.noise[name] = self.noise.get(name, 0) + fixed_sum((a - r) ** 2, unit=SQUARE_UNIT)
        ref_2d, art_2d = ref.raw.project(), pred.raw.project()
        for i, value in enumerate(per_sample):
            candidate = WorstSample(float(value), start_index + i, sample_ids[i], images[i],
                                    (ref_2d[0][i], ref_2d[1][i]), (art_2d[0][i], art_2d[1][i]), None if truth_2d is None else truth_2d[i])
            self._offer(candidate)

    def _offer(self, candidate: WorstSample) -> None:
        if len(self.worst) < self.worst_k:
            heapq.heappush(self.worst, candidate)
        elif self.worst and self.worst[0] < candidate:
            heapq.heapreplace(self.worst, candidate)

    def merge(self, other: DriftTally) -> None:
        self.vertex_drift.extend(other.vertex_drift)
        self.joint_sum = _add(self.joint_sum, other.joint_sum)
        self.joint_count += other.joint_count
        for name in other.signal:
            self.signal[name] = self.signal.get(name, 0) + other.signal[name]
            self.noise[name] = self.noise.get(name, 0) + other.noise[name]
        for candidate in other.worst:
            self._offer(candidate)

    def summary(self) -> dict:
        if not self.vertex_drift:
            return {}
        values = np.sort(np.asarray(self.vertex_drift))
        # None: bit-identical outputs (infinite SNR, which JSON cannot carry)
        snr = {name: None if self.noise[name] == 0 else float(10 * np.log10(self.signal[name] / self.noise[name])) for name in self.signal}
        return {
            "vertex_drift_mm": {"mean": float(values.mean()), "p50": float(np.percentile(values, 50)),
                                "p95": float(np.percentile(values, 95)), "max": float(values[-1])},
            "per_joint_drift_mm": [round(int(v) / self.joint_count / NM_PER_MM, 5) for v in self.joint_sum],
            "snr_db": snr,
            "worst": [{"sample": w.index, "sample_id": w.sample_id, "vertex_drift_mm": w.drift_mm} for w in self.worst_sorted()],
        }

    def worst_sorted(self) -> list[WorstSample]:
        return sorted(self.worst, reverse=True)

    def state(self) -> dict:
        return {"worst_k": self.worst_k, "vertex_drift": self.vertex_drift, "joint_sum": None if self.joint_sum is None else self.joint_sum.tolist(),
                "joint_count": self.joint_count, "signal": self.signal, "noise": self.noise}

    @classmethod
    def from_state(cls, state: dict, worst: list[WorstSample]) -> DriftTally:
        joint_sum = None if state["joint_sum"] is None else np.array(state["joint_sum"], dtype=object)
        return cls(state["worst_k"], list(state["vertex_drift"]), joint_sum, state["joint_count"], dict(state["signal"]),
                   dict(state["noise"]), list(worst))
