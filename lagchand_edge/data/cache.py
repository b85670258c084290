"""A preprocessing cache: a root's crops and per-hand ground truth decoded once, memory-mapped.

Every epoch of training (and every drift or evaluation run) otherwise decodes each JPEG, crops
it and poses both hand meshes again. `write_cache` does that once into uint8 / float32 `.npy`
files plus `cache.json` (the source's fingerprint, the sample ids, what was skipped);
`CachedDataset` serves the same sample dicts as `InterHandDataset`. A cache whose source
changed since it was written is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lagchand_edge.data.interhand import InterHandDataset, collate
from lagchand_edge.data.layout import KINDS, find_annotation
from lagchand_edge.data.records import UNREADABLE_AT_LOAD
from lagchand_edge.errors import UserError
from lagchand_edge.hand import load_hands
from lagchand_edge.io import atomic_dir

CACHE_CARD = "cache.json"
CACHE_FORMAT = "lagchand-edge-cache/1"
ARRAYS = ("image", "k", "joints_cam", "joint_valid", "vertices_cam", "joints_2d", "vertices_2d")


def source_fingerprint(dataset: InterHandDataset) -> str:
    """sha256 over the split's annotation files and each used image's path, size and mtime."""
    digest = hashlib.sha256()
    for kind in KINDS:
        path = find_annotation(dataset.root, dataset.split, kind)
        if path is not None:
            digest.update(kind.encode() + path.read_bytes())
    for record in dataset.records:
        stat = record.image_path.stat()
        digest.update(f"{record.image_path.relative_to(dataset.root)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def write_cache(root: Path, split: str, out: Path, mano_dir: Path | None = None, progress: Callable[[int], None] | None = None,
                force: bool = False, workers: int = 2) -> dict:
    """Decode and crop every readable two-hand sample of `root`'s split into `out` (atomically)."""
    dataset = InterHandDataset(root, split, mano_dir=mano_dir, strict=False)
    loader = torch.utils.data.DataLoader(dataset, 64, shuffle=False, collate_fn=collate, num_workers=workers)
    with atomic_dir(out, force=force) as tmp:
        arrays: dict[str, np.lib.format.open_memmap] = {}
        ids: list[str] = []
        for batch in loader:
            if batch is None:
                continue
            if not arrays:
                arrays = {key: np.lib.format.open_memmap(tmp / f"{key}.npy", "w+", _dtype(batch[key]), (len(dataset), *batch[key].shape[1:]))
                          for key in ARRAYS}
            for key in ARRAYS:
                arrays[key][len(ids) : len(ids) + len(batch["sample_id"])] = batch[key].numpy()
            ids.extend(batch["sample_id"])
            if progress:
                progress(len(batch["sample_id"]) + batch["dropped"])
        if not ids:
            raise UserError(f"{root}: no readable two-hand samples in split {split!r}")
        unreadable = len(dataset) - len(ids)
        for array in arrays.values():
            array.flush()
        del arrays  # close the maps before trimming
        if unreadable:  # the arrays were sized for every record: cut them to the readable ones
            for key in ARRAYS:
                np.save(tmp / f"{key}.trimmed.npy", np.load(tmp / f"{key}.npy", mmap_mode="r")[: len(ids)])
                (tmp / f"{key}.trimmed.npy").replace(tmp / f"{key}.npy")
        skipped = dict(dataset.skipped) | ({UNREADABLE_AT_LOAD: unreadable} if unreadable else {})
        card = {"format": CACHE_FORMAT, "source": str(Path(root).resolve()), "split": split, "samples": len(ids),
                "source_sha256": source_fingerprint(dataset), "hand_model": dataset.hands["right"].name if dataset.has_mesh else None,
                "image_size": dataset.image_size, "skipped": skipped, "sample_ids": ids}
        (tmp / CACHE_CARD).write_text(json.dumps(card))
    return card


def _dtype(tensor: torch.Tensor) -> np.dtype:
    return np.dtype(tensor.numpy().dtype)


def is_cache(path: Path) -> bool:
    return (Path(path) / CACHE_CARD).is_file()


class CachedDataset(torch.utils.data.Dataset):
    """The samples of a cache written by `write_cache`, as `InterHandDataset` serves them."""

    def __init__(self, path: Path, split: str | None = None, mano_dir: Path | None = None, limit: int | None = None,
                 verify: bool = True) -> None:
        self.root = Path(path)
        card = json.loads((self.root / CACHE_CARD).read_text())
        if card.get("format") != CACHE_FORMAT:
            raise UserError(f"{self.root}: not a lagchand-edge cache (format {card.get('format')!r})")
        if split is not None and split != card["split"]:
            raise UserError(f"{self.root}: the cache holds split {card['split']!r}, not {split!r}")
        if verify:
            source = Path(card["source"])
            current = source_fingerprint(InterHandDataset(source, card["split"], mano_dir=mano_dir, strict=False)) if source.is_dir() else None
            if current != card["source_sha256"]:
                raise UserError(f"{self.root}: its source {source} changed or is gone since the cache was written; write it again")
        self.split, self.image_size = card["split"], card["image_size"]
        self.sample_ids = card["sample_ids"][:limit]
        self.skipped = card["skipped"]
        self.hands = load_hands(card["hand_model"], mano_dir) if card["hand_model"] else None
        self.arrays = {key: np.load(self.root / f"{key}.npy", mmap_mode="r") for key in ARRAYS}

    @property
    def has_mesh(self) -> bool:
        return self.hands is not None

    def __len__(self) -> int:
        return len(self.sample_ids)

    def load(self, index: int, with_image: bool = True) -> dict[str, Any]:
        sample = {"sample_id": self.sample_ids[index], "has_mesh": self.has_mesh}
        for key in ARRAYS:
            if key != "image" or with_image:
                sample[key] = np.array(self.arrays[key][index])
        return sample

    __getitem__ = load


def open_dataset(path: Path, split: str | None, mano_dir: Path | None = None, limit: int | None = None,
                 strict: bool = False) -> InterHandDataset | CachedDataset:
    """A cache when `path` holds one, else the root read by the InterHand2.6M reader (lenient:
    bad records are skipped and counted; strict: the first one stops the run, named)."""
    if is_cache(path):
        return CachedDataset(path, split, mano_dir, limit)
    return InterHandDataset(path, split, mano_dir=mano_dir, strict=strict, limit=limit)
