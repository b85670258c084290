"""Pick calibration samples from an InterHand2.6M-format root (or a `data cache` of one), reproducibly.

Samples are stratified over captures (round-robin over captures, each shuffled by the seed), so
a small set still covers every subject; the chosen ids and their hash go into the manifest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lagchand_edge.data.cache import is_cache, open_dataset
from lagchand_edge.data.transforms import to_model_input


@dataclass
class CalibrationSet:
    ids: list[str]
    images: torch.Tensor  # (N, 3, 256, 256) float in [0, 1]
    source: str

    @property
    def ids_sha256(self) -> str:
        return hashlib.sha256("\n".join(self.ids).encode()).hexdigest()

    def manifest(self) -> dict:
        return {"source": self.source, "count": len(self.ids), "ids_sha256": self.ids_sha256, "ids": self.ids}


def select_calibration(root: Path, count: int, seed: int = 0, split: str = "test", mano_dir: Path | None = None) -> CalibrationSet:
    dataset = open_dataset(root, None if is_cache(root) else split, mano_dir)  # a cache holds one split: its own
    by_capture: dict[str, list[int]] = {}
    for index, sample_id in enumerate(dataset.sample_ids):
        by_capture.setdefault(sample_id.split("/")[0], []).append(index)
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(indices)) for _, indices in sorted(by_capture.items())]
    chosen: list[int] = []
    while len(chosen) < min(count, len(dataset)):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(int(queue.pop(0)))
    samples = [dataset.load(i) for i in chosen]
    images = to_model_input(np.stack([s["image"] for s in samples]))
    return CalibrationSet([s["sample_id"] for s in samples], images, f"{root} [{dataset.split}]")
