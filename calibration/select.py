"""Pick calibration samples from an InterHand2.6M-format root (or a `data cache` of one), or from
a plain folder of one's own photos, reproducibly.

Samples are stratified over captures (round-robin over captures, each shuffled by the seed), so
a small set still covers every subject; the chosen ids and their hash go into the manifest. A
folder of images (no annotations) gives the square around both hands in each photo when a hand
finder is given (`convert --calib-detect`: the predict app's palm detector), else, and where it
finds no hands, the photo's centre square, resized to the model's input; the manifest says how
many of each. Without a finder, frame such photos so that both hands fill most of the picture.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lagchand_edge.data.cache import is_cache, open_dataset
from lagchand_edge.data.layout import find_annotation
from lagchand_edge.data.transforms import crop_image, to_model_input
from lagchand_edge.errors import UserError
from lagchand_edge.io import IMAGE_SUFFIXES

HandFinder = Callable[[np.ndarray], "tuple[float, float, float] | None"]  # RGB photo -> square (x0, y0, side) around both hands


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


def is_image_folder(root: Path) -> bool:
    """A folder that is neither a cache nor an InterHand2.6M-format root (no data annotations)."""
    root = Path(root)
    return root.is_dir() and not is_cache(root) and not any(find_annotation(root, split, "data") for split in ("train", "val", "test"))


def select_images(root: Path, count: int, seed: int = 0, size: int = 256, find: HandFinder | None = None) -> CalibrationSet:
    """`count` images of a plain folder (shuffled by `seed`), as the squares `find` gives around their
    hands, else their centre squares, at `size`; unreadable files are passed over (the manifest's
    ids name the ones used)."""
    files = sorted(p for p in Path(root).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) and no InterHand2.6M annotations")
    ids, crops, found = [], [], 0
    for index in np.random.default_rng(seed).permutation(len(files)):
        if len(ids) == count:
            break
        try:
            with Image.open(files[index]) as handle:
                image = handle.convert("RGB")
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            continue
        square = find(np.asarray(image)) if find is not None else None
        found += square is not None
        side = min(image.size)
        crops.append(np.asarray(crop_image(image, square or ((image.width - side) / 2, (image.height - side) / 2, side), size)))
        ids.append(files[index].name)
    if not ids:
        raise UserError(f"{root}: none of its {len(files)} images could be read")
    how = "centre squares" if find is None else f"squares around the hands found in {found}, centre squares for {len(ids) - found} (no hands found)"
    return CalibrationSet(ids, to_model_input(np.stack(crops)), f"{root} (image folder, {how})")


def select_calibration(root: Path, count: int, seed: int = 0, split: str = "test", mano_dir: Path | None = None,
                       find: HandFinder | None = None) -> CalibrationSet:
    """From a root, a cache or a folder of photos (where `find`, when given, places the crops)."""
    if is_image_folder(root):
        return select_images(root, count, seed, find=find)
    dataset = open_dataset(root, None if is_cache(root) else split, mano_dir)  # a cache holds one split: its own
    by_capture: dict[str, list[int]] = {}
    for index, sample_id in enumerate(dataset.sample_ids):
        by_capture.setdefault(sample_id.split("/")[0], []).append(index)
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(indices)) for _, indices in sorted(by_capture.items())]
    samples: list[dict] = []
    while len(samples) < count and any(queues):
        for queue in queues:
            if queue and len(samples) < count:
                sample = dataset[int(queue.pop(0))]  # None: an image the lenient reader cannot read, passed over
                if sample is not None:
                    samples.append(sample)
    if not samples:
        raise UserError(f"{root}: none of its {len(dataset)} samples could be read")
    images = to_model_input(np.stack([s["image"] for s in samples]))
    return CalibrationSet([s["sample_id"] for s in samples], images, f"{root} [{dataset.split}]")
