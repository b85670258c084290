"""The annotation schema at the reader's boundary: one release record checked field by field.

InterHand2.6M's files are large JSON written by other tools; a record that is not what the
release's format says (a missing key, a string where numbers belong, a short array, NaN, a
file name that leaves the image folder) becomes a `SampleError` naming the file, the record
and the field, never a traceback deep inside the reader. A lenient reader counts it by
`reason` and carries on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lagchand_edge.errors import UserError
from lagchand_edge.hand.joints import HAND_NAMES

#: the release's arrays: name -> (shape, largest plausible magnitude). MANO pose is 16 joints x 3
#: axis-angle (radians), shape coefficients are a few standard deviations, translations metres;
#: positions and pixels are millimetres and pixels. Beyond these a fit or a camera is broken.
CAMERA_ARRAYS = {"camrot": ((3, 3), 1.0 + 1e-3), "campos": ((3,), 1e5), "focal": ((2,), 1e6), "princpt": ((2,), 1e6)}
MANO_ARRAYS = {"pose": ((48,), 4 * np.pi), "shape": ((10,), 20.0), "trans": ((3,), 100.0)}
JOINTS, WORLD_MM = 42, 1e5  # both hands, release order; a world coordinate beyond 100 m is not a hand in a dome


class SampleError(UserError):
    """One sample cannot be read (missing or broken image, bad record); `reason` groups the skips."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message.split(":", 1)[-1].strip().split(" (")[0]


#: the skip reason for a record the index accepted but whose image could not be decoded
UNREADABLE_AT_LOAD = "unreadable at load time"


def describe_skipped(skipped: dict[str, int]) -> str:
    """What a lenient reader left out, in the one form every command prints:
    'skipped none' or 'skipped 3 (2 unreadable image, 1 no valid joint)'."""
    if not skipped:
        return "skipped none"
    reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(skipped.items(), key=lambda item: (-item[1], item[0])))
    return f"skipped {sum(skipped.values())} ({reasons})"


@dataclass(frozen=True)
class Record:
    """Everything the reader needs for one frame, gathered from the annotation files."""

    sample_id: str
    image_path: Path
    world_joints: np.ndarray  # (42, 3) mm, release order
    joint_valid: np.ndarray  # (42,)
    camrot: np.ndarray
    campos: np.ndarray
    focal: np.ndarray
    princpt: np.ndarray
    mano: dict[str, dict[str, np.ndarray]] | None


def numbers(value: Any, shape: tuple[int, ...], where: str, reason: str, bound: float = np.inf) -> np.ndarray:
    """`value` as a finite float64 array of `shape` within +-`bound`, or a SampleError saying what is wrong with it."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise SampleError(f"{where}: not an array of numbers", reason) from None
    if array.shape != shape:
        raise SampleError(f"{where}: shape {array.shape}, expected {shape}", reason)
    if not np.isfinite(array).all():
        raise SampleError(f"{where}: non-finite values (NaN or inf)", reason)
    if np.abs(array).max(initial=0.0) > bound:
        raise SampleError(f"{where}: values up to {np.abs(array).max():.3g}, beyond the plausible {bound:.3g}", reason)
    return array


def _lookup(tree: Any, keys: tuple[str, ...], where: str, reason: str) -> Any:
    """tree[k0][k1]... or a SampleError naming the path that is not there."""
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            raise SampleError(f"{where} missing ({'/'.join(keys)})", reason)
        tree = tree[key]
    return tree


def image_index(images: Any) -> dict:
    """The COCO 'images' list as {id: entry}, leaving out entries that are not objects with an id."""
    return {img["id"]: img for img in images if isinstance(img, dict) and isinstance(img.get("id"), (int, str))}


def read_record(ann: Any, images: dict, cameras: Any, joints: Any, mano: Any, folder: Path, paths: tuple[Path, Path, Path]) -> Record:
    """One 'interacting' annotation -> a checked `Record`, or SampleError."""
    data_path, camera_path, joints_path = paths
    if not isinstance(ann, dict):
        raise SampleError(f"{data_path}: an annotation is a {type(ann).__name__}, not an object", "malformed annotation")
    name = f"{data_path}: annotation {ann.get('id')!r}"
    image_id = ann.get("image_id")
    img = images.get(image_id) if isinstance(image_id, (int, str)) else None
    if img is None:
        raise SampleError(f"{name}: image id {ann.get('image_id')!r} is not in 'images'", "image id not in images")
    for key in ("capture", "frame_idx", "camera", "file_name"):
        if not isinstance(img.get(key), (int, str)) or isinstance(img.get(key), bool):
            raise SampleError(f"{name}: its image lacks {key!r} (or it is not a number or text)", f"image without {key}")
    capture, frame, camera_id = str(img["capture"]), str(img["frame_idx"]), str(img["camera"])
    where = f"{camera_path}: capture {capture} camera {camera_id}"
    params = {key: numbers(_lookup(cameras, (capture, key, camera_id), where, "camera missing"), shape, f"{where} {key}", f"bad camera {key}",
                           bound)
              for key, (shape, bound) in CAMERA_ARRAYS.items()}
    if (params["focal"] <= 0).any():
        raise SampleError(f"{where} focal: {params['focal'].tolist()} is not positive", "bad camera focal")
    where = f"{joints_path}: capture {capture} frame {frame}"
    world = numbers(_lookup(joints, (capture, frame, "world_coord"), where, "joints missing"), (JOINTS, 3), f"{where} world_coord",
                    "bad world_coord", WORLD_MM)
    valid = numbers(np.asarray(ann.get("joint_valid", [[1]] * JOINTS), dtype=object).reshape(-1).tolist(), (JOINTS,),
                    f"{name} joint_valid", "bad joint_valid")
    hand_params = None if mano is None else _mano(mano, capture, frame)
    path = _inside(folder, img["file_name"], name)
    if not path.is_file():
        raise SampleError(f"{path}: image missing")
    return Record(f"{capture}/{frame}/{camera_id}", path, world, valid, *params.values(), hand_params)


def _mano(mano: Any, capture: str, frame: str) -> dict[str, dict[str, np.ndarray]]:
    where = f"MANO_NeuralAnnot: capture {capture} frame {frame}"
    fits = mano.get(capture, {}).get(frame) if isinstance(mano, dict) and isinstance(mano.get(capture), dict) else None
    if not isinstance(fits, dict) or any(not isinstance(fits.get(side), dict) for side in HAND_NAMES):
        raise SampleError(f"{where} lacks a hand's fit", "MANO fit missing")
    return {side: {key: numbers(fits[side].get(key), shape, f"{where} {side} {key}", f"bad MANO {key}", bound)
                   for key, (shape, bound) in MANO_ARRAYS.items()}
            for side in HAND_NAMES}


def _inside(folder: Path, file_name: Any, name: str) -> Path:
    """The image path under `folder`; a name that leaves it ('../x.jpg', '/etc/x') is refused."""
    path = folder / str(file_name)
    if not path.resolve().is_relative_to(folder.resolve()):
        raise SampleError(f"{name}: file_name {str(file_name)!r} leaves the image folder", "file_name outside the image folder")
    return path
