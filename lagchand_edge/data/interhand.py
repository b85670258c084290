"""InterHand2.6M reader: the official layout (or this toolkit's synthetic copy of it).

It selects two-hand ("interacting") frames as IntagHand does, crops around both hands, resizes
to 256x256 and yields per-hand ground truth in camera space (mm, hand order left, right;
InterHand2.6M joint order). With `_MANO_NeuralAnnot.json` and a hand model it also yields GT
meshes; without (like the real 4-frame sample in ../shared/data) it runs joints-only.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from lagchand_edge.data import camera as cam
from lagchand_edge.data.layout import DATASET_CARD, SPLITS, find_annotation, image_dir
from lagchand_edge.data.records import Record, SampleError, describe_skipped, image_index, read_record
from lagchand_edge.data.transforms import crop_image, crop_intrinsics, square_box
from lagchand_edge.errors import UserError
from lagchand_edge.hand import HandModel, load_hands
from lagchand_edge.hand.joints import HAND_NAMES, RELEASE_SLICES


def _load_json(path: Path) -> Any:
    try:
        with open(path) as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: malformed JSON ({exc.msg} at line {exc.lineno})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None


#: the largest image the reader decodes: InterHand2.6M's frames are 334x512, a 4K photo is 8.3 MP
MAX_IMAGE_PIXELS = 64_000_000


class InterHandDataset(torch.utils.data.Dataset):
    """Two-hand samples of one split. `strict=False` skips bad records and counts them in `skipped`."""

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        *,
        mano_dir: str | Path | None = None,
        strict: bool = True,
        image_size: int = 256,
        crop_fill: float = 0.7,
        limit: int | None = None,
        augment_seed: int | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError(f"{self.root}: data folder not found")
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        self.split, self.strict, self.image_size, self.crop_fill = split, strict, image_size, crop_fill
        self.skipped: Counter[str] = Counter()
        self.augment_seed, self.epoch = augment_seed, 0  # crop jitter for training, reproducible per epoch
        self.hands = self._hand_model(mano_dir)
        self.records = self._index(limit)
        if not self.records:
            detail = f"; {describe_skipped(self.skipped)}" if self.skipped else ""
            raise UserError(f"{self.root}: no two-hand samples in split {split!r}{detail}")

    @property
    def has_mesh(self) -> bool:
        return self.hands is not None

    def _hand_model(self, mano_dir: str | Path | None) -> dict[str, HandModel] | None:
        if find_annotation(self.root, self.split, "MANO_NeuralAnnot") is None:
            return None  # joints-only: no mesh annotations to build GT meshes from
        card_path = self.root / DATASET_CARD
        name = _load_json(card_path).get("hand_model", "mano") if card_path.is_file() else "mano"
        if name == "mano" and mano_dir is None:
            return None  # the real release without the user's MANO files: joints-only
        return load_hands(name, mano_dir)

    def _require(self, kind: str) -> Any:
        path = find_annotation(self.root, self.split, kind)
        if path is None:
            raise UserError(
                f"{self.root}: missing InterHand2.6M_{self.split}_{kind}.json (looked in annotations/{self.split}/ and the folder itself)"
            )
        return path, _load_json(path)

    def _index(self, limit: int | None) -> list[Record]:
        data_path, data = self._require("data")
        camera_path, cameras = self._require("camera")
        joints_path, joints = self._require("joint_3d")
        mano = _load_json(find_annotation(self.root, self.split, "MANO_NeuralAnnot")) if self.has_mesh else None
        if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
            raise UserError(f"{data_path}: expected COCO-style 'images' and 'annotations'")
        if not isinstance(data["images"], list) or not isinstance(data["annotations"], list):
            raise UserError(f"{data_path}: 'images' and 'annotations' must be lists")
        images = image_index(data["images"])
        folder = image_dir(self.root, self.split)
        records = []
        for ann in data["annotations"]:
            if isinstance(ann, dict) and (ann.get("hand_type") != "interacting" or not ann.get("hand_type_valid", 1)):
                continue
            try:
                records.append(read_record(ann, images, cameras, joints, mano, folder, (data_path, camera_path, joints_path)))
            except SampleError as exc:
                if self.strict:
                    raise
                self.skipped[exc.reason] += 1
            if limit is not None and len(records) >= limit:
                break
        return records

    def __len__(self) -> int:
        return len(self.records)

    @property
    def sample_ids(self) -> list[str]:
        return [record.sample_id for record in self.records]

    def _vertices_world(self, record: Record) -> np.ndarray:
        out = []
        for side in HAND_NAMES:
            p = record.mano[side]
            pose, shape, trans = p["pose"], p["shape"], p["trans"]
            out.append(self.hands[side].forward_numpy(pose, shape, trans).vertices[0].numpy() * 1000)
        return np.stack(out)

    def _image(self, record: Record) -> Image.Image:
        try:
            with Image.open(record.image_path) as handle:
                if handle.width * handle.height > MAX_IMAGE_PIXELS:  # checked before decoding: a huge header is refused, not decoded
                    raise SampleError(f"{record.image_path}: {handle.width}x{handle.height} pixels is more than this reader takes "
                                      f"({MAX_IMAGE_PIXELS // 10**6} MP)", "image too large")
                if handle.mode != "RGB":
                    raise SampleError(f"{record.image_path}: image mode is {handle.mode}, expected RGB")
                image = handle.copy()
        except Image.DecompressionBombError as exc:  # Pillow's own limit, hit while reading the header
            raise SampleError(f"{record.image_path}: more than this reader takes ({exc})", "image too large") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise SampleError(f"{record.image_path}: cannot decode image ({exc})", "unreadable image") from None
        if all(low == high for low, high in image.getextrema()):
            raise SampleError(f"{record.image_path}: the image is one flat colour {image.getpixel((0, 0))} (a broken camera?)", "flat image")
        return image

    def load(self, index: int, with_image: bool = True) -> dict[str, Any]:
        """One sample as numpy arrays; raises `SampleError` if it cannot be read.

        `with_image=False` reads the annotations alone (no decoding): the ground truth in the
        crop the image would have been cut to, for statistics over a whole set.
        """
        record = self.records[index]
        image = self._image(record) if with_image else None
        joints_cam = np.stack([cam.world_to_camera(record.world_joints[RELEASE_SLICES[s]], record.camrot, record.campos) for s in HAND_NAMES])
        joint_valid = np.stack([record.joint_valid[RELEASE_SLICES[s]] for s in HAND_NAMES]) > 0
        k_full = cam.intrinsics(record.focal, record.princpt)
        if not joint_valid.any():
            raise SampleError(f"{record.image_path}: no joint is marked valid", "no valid joint")
        if record.mano is not None:
            vertices_cam = cam.world_to_camera(self._vertices_world(record), record.camrot, record.campos)
            anchor = cam.project(vertices_cam, k_full).reshape(-1, 2)
        else:
            vertices_cam = np.zeros((2, 0, 3))
            anchor = cam.project(joints_cam[joint_valid], k_full)
        if (joints_cam[joint_valid][:, 2] <= 0).any() or (vertices_cam[..., 2] <= 0).any() or not np.isfinite(vertices_cam).all():
            raise SampleError(f"{record.image_path}: the hands are not in front of the camera (check camrot / campos)", "hands behind the camera")
        box = square_box(anchor, self.crop_fill)
        if self.augment_seed is not None:
            rng = np.random.default_rng([self.augment_seed, self.epoch, index])
            x0, y0, side = box
            grown = side * rng.uniform(0.9, 1.15)
            shift = rng.uniform(-0.06, 0.06, 2) * side
            box = (x0 + (side - grown) / 2 + shift[0], y0 + (side - grown) / 2 + shift[1], grown)
        k = crop_intrinsics(k_full, box, self.image_size)
        sample = {
            "sample_id": record.sample_id,
            "k": k.astype(np.float32),
            "joints_cam": joints_cam.astype(np.float32),
            "joint_valid": joint_valid,
            "vertices_cam": vertices_cam.astype(np.float32),
            "joints_2d": cam.project(joints_cam, k).astype(np.float32),
            "vertices_2d": cam.project(vertices_cam, k).astype(np.float32),
            "has_mesh": record.mano is not None,
        }
        if image is not None:
            sample["image"] = np.asarray(crop_image(image, box, self.image_size))
        return sample

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        try:
            return self.load(index)
        except SampleError:
            if self.strict:
                raise
            return None


def collate(samples: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Stack samples into a batch, dropping the ones a non-strict reader could not read."""
    kept = [s for s in samples if s is not None]
    if not kept:
        return None
    batch: dict[str, Any] = {"dropped": len(samples) - len(kept)}
    for key in kept[0]:
        values = [s[key] for s in kept]
        batch[key] = values if isinstance(values[0], str) else torch.as_tensor(np.stack(values))
    return batch
