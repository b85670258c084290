"""Artifacts: a model file (or .mlpackage folder) plus `manifest.json`, and `load_runner`.

The manifest records target, precision, recipe, calibration ids, I/O spec, the source
checkpoint's hash, tool versions, the artifact's sha256 and size. `load_runner(path)` opens any
artifact by its manifest (verifying its hash) and returns something called exactly like the
FP32 model, so drift, profiling and demos never branch on target. Foreign `.pte` / `.tflite`
files without a manifest open as raw runners.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from converters import get_target, open_model, target_for_file
from lagchand_edge import __version__
from lagchand_edge.errors import UserError
from lagchand_edge.hand.joints import INTERHAND_JOINT_NAMES
from lagchand_edge.io import update_digest
from lagchand_edge.model import OUTPUT_NAMES, HandPrediction

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
TOOLS = ("lagchand-edge", "torch", "executorch", "torchao", "coremltools", "litert-torch", "ai-edge-litert", "ai-edge-quantizer")


def tool_versions() -> dict[str, str]:
    found = {}
    for name in TOOLS:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    found["python"] = platform.python_version()
    return found


def path_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, sorted)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        update_digest(digest, file)
    return digest.hexdigest()


def path_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


#: What an app hands the model, by `convert --input` (each target's `INPUTS` says which it offers).
INPUT_FORMS = {
    "nchw": {"dtype": "float32", "layout": "NCHW RGB", "range": [0.0, 1.0]},
    "nhwc": {"dtype": "float32", "layout": "NHWC RGB (camera frames as they come)", "range": [0.0, 1.0]},
    "image": {"dtype": "image", "layout": "RGB image (CoreML ImageType: a CVPixelBuffer or CGImage)", "range": [0, 255]},
}


def io_spec(shapes: dict[str, tuple], form: str = "nchw") -> dict:
    """The deployed model's inputs and outputs as an app sees them (manifest, in-file metadata, model card)."""
    return {
        "inputs": [{"name": "image", "shape": list(shapes["image"]), **INPUT_FORMS[form],
                    "normalisation": "ImageNet mean/std" + (" after scaling by 1/255" if form == "image" else "") + ", applied inside the graph"}],
        "outputs": [{"name": name, "shape": list(shapes[name]), "dtype": "float32",
                     "units": "normalised metres, root-relative (middle MCP)" if name != "camera" else "weak perspective (s, tx, ty)"}
                    for name in OUTPUT_NAMES],
    }


def embedded_metadata(precision: str, source: dict, shapes: dict[str, tuple], form: str = "nchw") -> dict:
    """What a model file carries about itself where its format allows (LiteRT metadata, CoreML
    user-defined metadata): enough for an app to feed it and read it without this toolkit."""
    return {
        "model": "LAGCHand (two-hand mesh reconstruction)", "precision": precision, "config": source.get("config"),
        "source_checkpoint_sha256": source.get("checkpoint_sha256"), **io_spec(shapes, form),
        "hand_axis": "axis 1 of every output: 0 left hand, 1 right hand",
        "joint_order": list(INTERHAND_JOINT_NAMES), "camera": "v2d_px = s * 256 * v[:2] + t * 128 + 128 in the 256x256 crop",
        "model_card": "MODEL_CARD.md beside the model file", "producer": f"lagchand-edge {__version__}",
    }


def build_manifest(target: str, precision: str, model_file: Path, extra: dict, source: dict, calibration: dict | None,
                   int8_plan, shapes: dict[str, tuple], form: str = "nchw") -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "target": target,
        "precision": precision,
        "file": model_file.name,
        "sha256": path_sha256(model_file),
        "size_bytes": path_size(model_file),
        "recipe": {"precision": precision, "int8_plan": int8_plan.to_dict() if int8_plan else None, **extra},
        "calibration": calibration,
        **io_spec(shapes, form),
        "source": source,
        "tools": tool_versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def read_manifest(artifact_dir: Path) -> dict:
    """The manifest of an artifact folder; refuses newer schemas and tampered model files."""
    path = Path(artifact_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{artifact_dir}: no {MANIFEST}; not a lagchand-edge artifact") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: malformed manifest ({exc.msg})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: malformed manifest (not UTF-8 text)") from None
    _check_manifest(path, manifest)
    model = Path(artifact_dir) / manifest["file"]
    if model.resolve().parent != Path(artifact_dir).resolve():  # "../x.tflite" or "/etc/passwd": never read outside the folder
        raise UserError(f"{path}: 'file' {manifest['file']!r} is not a file inside the artifact folder")
    if not model.exists():
        raise UserError(f"{artifact_dir}: model file {manifest.get('file')!r} is missing")
    if path_sha256(model) != manifest.get("sha256"):
        raise UserError(f"{model}: sha256 does not match the manifest; the artifact was modified or is corrupt")
    return manifest


#: manifest key -> the type its value must have (what every reader of a manifest relies on)
MANIFEST_TYPES = {"schema_version": int, "target": str, "precision": str, "file": str, "sha256": str, "source": dict}


def _check_manifest(path: Path, manifest) -> None:
    """Refuse a manifest that is not an object with the keys and types `MANIFEST_TYPES` names, or from a newer schema."""
    if not isinstance(manifest, dict):
        raise UserError(f"{path}: malformed manifest (a JSON object is expected, found {type(manifest).__name__})")
    for key, kind in MANIFEST_TYPES.items():
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            found = "missing" if key not in manifest else f"{type(manifest[key]).__name__} {manifest[key]!r}"[:80]
            raise UserError(f"{path}: malformed manifest: {key!r} must be {kind.__name__} ({found})")
    if manifest["schema_version"] > SCHEMA_VERSION:
        raise UserError(f"{path}: manifest schema {manifest['schema_version']} is newer than this lagchand-edge understands ({SCHEMA_VERSION})")


@dataclass
class ArtifactRunner:
    """Calls an artifact like the FP32 model: images (B, 3, 256, 256) in [0, 1] -> HandPrediction."""

    manifest: dict[str, Any]
    backend: Any

    def raw(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self.backend.run(inputs)

    def __call__(self, images: np.ndarray) -> HandPrediction:
        images = np.asarray(images, dtype=np.float32)
        per_image = [self.backend.run([images[i : i + 1]]) for i in range(len(images))]
        return HandPrediction(*(np.concatenate([out[k] for out in per_image]) for k in range(len(OUTPUT_NAMES))))


def find_artifacts(paths: list[Path]) -> list[Path]:
    """Artifact folders and model files as given, with other folders searched for artifacts (by manifest)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise UserError(f"{path}: not found")
        if (path / MANIFEST).is_file() or path.is_file():
            found.append(path)
            continue
        inside = sorted(p.parent for p in path.rglob(MANIFEST) if not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not inside:
            raise UserError(f"{path}: no artifacts (folders with {MANIFEST}) found")
        found += inside
    return list(dict.fromkeys(found))


def load_runner(path: str | Path, threads: int | None = None) -> ArtifactRunner:
    """Open an artifact folder (with manifest) or a foreign .pte/.tflite file (raw use only), on
    `threads` CPU threads (None: the runtime's choice)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: not found")
    if path.is_dir() and (path / MANIFEST).is_file():
        manifest = read_manifest(path)
        target = get_target(manifest["target"])
        model_path = path / manifest["file"]
    else:
        name = target_for_file(path)
        if name is None:
            raise UserError(f"{path}: not a model this toolkit runs (expected an artifact folder, .pte or .tflite)")
        target, model_path = get_target(name), path
        manifest = {"target": name, "precision": "unknown", "file": path.name, "foreign": True}
    return ArtifactRunner(manifest, open_model(target, model_path, path, threads))
