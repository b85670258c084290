"""Open an artifact folder (manifest + model file) through the target registry: without torch for
LiteRT; ExecuTorch's Python runtime and the CoreML interpreter (off macOS) bring torch themselves."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from apps.predict.sources import SourceError
from converters import get_target, open_model
from lagchand_edge.errors import UserError
from lagchand_edge.io import file_sha256

Model = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]  # (1, 3, S, S) in [0, 1] -> vertices, joints, camera


def open_artifact(folder: Path, threads: int | None = None) -> tuple[Model, dict, np.ndarray | None]:
    """The model (on `threads` CPU threads; None: the runtime's choice) as a callable, its manifest,
    and the hands' mesh faces (2, F, 3) when the artifact carries them."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as exc:  # ValueError: malformed JSON or not UTF-8
        raise SourceError(f"{folder}: not a lagchand-edge artifact (manifest.json: {exc})") from None
    if not isinstance(manifest, dict):
        raise SourceError(f"{folder}: malformed manifest.json (a JSON object is expected)")
    file = folder / str(manifest.get("file", ""))
    if not file.is_file() or file.parent.resolve() != folder.resolve():
        raise SourceError(f"{folder}: the manifest's model file {manifest.get('file')!r} is missing or outside the folder")
    if file_sha256(file) != manifest.get("sha256"):
        raise SourceError(f"{file}: sha256 does not match the manifest; the artifact was modified or is corrupt")
    try:
        target = get_target(str(manifest.get("target")))
    except UserError as exc:
        raise SourceError(f"{folder}: {exc}") from None
    try:
        runner = open_model(target, file, folder, threads)
    except UserError as exc:
        raise SourceError(str(exc)) from None
    faces = folder / "hand_faces.npy"  # written by lagchand-edge convert
    return (lambda images: tuple(runner.run([images])[:3])), manifest, (np.load(faces) if faces.is_file() else None)
