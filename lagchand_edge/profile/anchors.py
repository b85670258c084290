"""MediaPipe's on-device hand landmark models as latency anchors (opt-in fetch, sha256-verified).

`lagchand-edge anchors fetch` is the only command of the toolkit that uses the network: it asks
the package index for the `mediapipe==0.10.14` wheel (`pip download --no-deps`, never installed),
extracts only the two hand-landmark `.tflite` files (and the palm detector that `predict --detect`
uses) into the user cache and checks their sha256.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from lagchand_edge.errors import UserError
from lagchand_edge.io import atomic_write_bytes

MEDIAPIPE = "mediapipe==0.10.14"
#: name -> (path inside the wheel, sha256) (issue #6)
ANCHORS = {
    "hand_landmark_full": ("mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
                           "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3"),
    "hand_landmark_lite": ("mediapipe/modules/hand_landmark/hand_landmark_lite.tflite",
                           "048edd3645c9bf7397d19a9f6e3a42957d6e414c9bea6598030a2e9b624156e6"),
}


#: MediaPipe's palm detector (Apache-2.0), for `predict --detect`: fetched with the anchors, never used unless asked for.
DETECTOR = {"palm_detection_full": ("mediapipe/modules/palm_detection/palm_detection_full.tflite",
                                    "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54")}


def cache_dir() -> Path:
    """$LAGCHAND_EDGE_CACHE/anchors, else ~/.cache/lagchand-edge/anchors."""
    base = os.environ.get("LAGCHAND_EDGE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lagchand-edge"
    return Path(base) / "anchors"


def extract_anchors(wheel: Path, cache: Path, anchors: dict[str, tuple[str, str]] = ANCHORS) -> list[Path]:
    """Copy the anchor files out of a wheel into `cache`, refusing any whose sha256 differs."""
    written = []
    try:
        with zipfile.ZipFile(wheel) as archive:
            for name, (member, expected) in anchors.items():
                try:
                    data = archive.read(member)
                except KeyError:
                    raise UserError(f"{wheel.name}: has no {member}") from None
                actual = hashlib.sha256(data).hexdigest()
                if actual != expected:
                    raise UserError(f"{wheel.name}: {member} has sha256 {actual}, expected {expected}; not saved")
                target = cache / f"{name}.tflite"
                atomic_write_bytes(target, data)
                written.append(target)
    except zipfile.BadZipFile:
        raise UserError(f"{wheel}: not a wheel (zip) file") from None
    return written


def fetch(cache: Path | None = None) -> list[Path]:
    """Download the mediapipe wheel to a temporary folder and extract the anchors from it."""
    cache = cache or cache_dir()
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
                   "--quiet", MEDIAPIPE, "-d", tmp]
        done = subprocess.run(command, capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("mediapipe-*.whl"))
        if done.returncode != 0 or not wheels:
            detail = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise UserError(f"pip download {MEDIAPIPE} failed: {detail}")
        return extract_anchors(wheels[0], cache, ANCHORS | DETECTOR)


def cached_anchors(cache: Path | None = None) -> dict[str, Path]:
    """The anchor files in the cache; a one-line how-to when it is empty."""
    cache = cache or cache_dir()
    found = {name: cache / f"{name}.tflite" for name in ANCHORS if (cache / f"{name}.tflite").is_file()}
    if not found:
        raise UserError(f"no anchor models in {cache}; run `lagchand-edge anchors fetch` once (downloads {MEDIAPIPE} from the package index)")
    for name, path in found.items():
        if hashlib.sha256(path.read_bytes()).hexdigest() != ANCHORS[name][1]:
            raise UserError(f"{path}: sha256 differs from MediaPipe's; run `lagchand-edge anchors fetch` again")
    return found


def anchors_cached() -> bool:
    """Whether `cached_anchors()` would find intact anchors (quickstart times them only then)."""
    try:
        return bool(cached_anchors())
    except UserError:
        return False


def cached_detector(cache: Path | None = None) -> Path:
    """The palm detector's file in the cache (sha256-checked); a one-line how-to when it is missing."""
    cache = cache or cache_dir()
    (name, (_, expected)), = DETECTOR.items()
    path = cache / f"{name}.tflite"
    if not path.is_file():
        raise UserError(f"no palm detector in {cache}; run `lagchand-edge anchors fetch` once (downloads {MEDIAPIPE} from the package index)")
    if hashlib.sha256(path.read_bytes()).hexdigest() != expected:
        raise UserError(f"{path}: sha256 differs from MediaPipe's; run `lagchand-edge anchors fetch` again")
    return path
