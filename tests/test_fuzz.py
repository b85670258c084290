"""Fuzzing the input boundaries (#21): mutated annotations, cameras, MANO fits, manifests and image
bytes must end in a result or one `UserError`, never another exception, a read outside the data
root, or a NaN in what comes back. Seeded (derandomised) and bounded, so CI runs the same cases."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lagchand_edge.artifact import MANIFEST, read_manifest
from lagchand_edge.data.interhand import InterHandDataset
from lagchand_edge.errors import UserError


def fuzz(cases: int) -> settings:
    """Seeded, no example database, no deadline: the same `cases` in every run."""
    return settings(derandomize=True, database=None, deadline=None, max_examples=cases, suppress_health_check=list(HealthCheck))

#: any JSON value, the odd ones weighted in: NaN, inf, huge and negative numbers, paths that leave a folder
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
              st.sampled_from(["", "x", "../../outside.jpg", "/etc/hostname", "Capture0", "400002", "NaN", "1e400"]), st.text(max_size=8)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


def _paths(tree, prefix=()):
    """Every (key path) in a JSON tree, so that a mutation can land anywhere."""
    yield prefix
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree[:3]):  # long arrays: their first entries stand for the rest
            yield from _paths(value, (*prefix, i))


def _mutate(tree, path, value, delete: bool):
    if not path:
        return value
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return tree


@st.composite
def mutations(draw, files: dict[str, object]):
    """(file kind, mutated JSON tree): one value replaced or deleted somewhere in one annotation file."""
    kind = draw(st.sampled_from(sorted(files)))
    tree = json.loads(json.dumps(files[kind]))
    path = draw(st.sampled_from(list(_paths(tree))))
    return kind, _mutate(tree, path, draw(JSON_VALUES), draw(st.booleans()))


def _read_everything(root: Path, split: str) -> None:
    """What every command does with a root: index it (strict and lenient) and load each sample."""
    for strict in (True, False):
        try:
            dataset = InterHandDataset(root, split, strict=strict)
        except UserError:
            continue
        for record in dataset.records:
            assert record.image_path.resolve().is_relative_to(root.resolve()), record.image_path
        for index in range(len(dataset)):
            try:
                sample = dataset.load(index)
            except UserError:
                continue
            for key in ("joints_cam", "joints_2d", "vertices_cam", "vertices_2d", "k"):
                assert np.isfinite(sample[key]).all(), key


def _annotation_files(root: Path, split: str) -> dict[str, Path]:
    return {kind: path for kind in ("data", "camera", "joint_3d", "MANO_NeuralAnnot")
            if (path := root / f"annotations/{split}/InterHand2.6M_{split}_{kind}.json").is_file()}


@pytest.fixture(scope="module")
def two_sample_set(tmp_path_factory) -> Path:
    from lagchand_edge.data.synth import write_dataset

    return write_dataset(tmp_path_factory.mktemp("fuzz") / "set", 2, seed=11, split="test", workers=1)


def test_mutated_annotations_never_crash_or_leave_the_root(two_sample_set):
    files = {kind: json.loads(path.read_text()) for kind, path in _annotation_files(two_sample_set, "test").items()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "set"
        shutil.copytree(two_sample_set, root)
        (Path(tmp) / "outside.jpg").write_bytes(next((root / "images").rglob("*.jpg")).read_bytes())
        paths = _annotation_files(root, "test")

        @fuzz(1000)
        @given(mutations(files))
        def case(mutation):
            kind, tree = mutation
            for name, path in paths.items():
                path.write_text(json.dumps(tree if name == kind else files[name]))
            _read_everything(root, "test")

        case()


def test_corrupted_image_bytes_are_a_skipped_sample(two_sample_set):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "set"
        shutil.copytree(two_sample_set, root)
        image = sorted((root / "images").rglob("*.jpg"))[0]
        original = image.read_bytes()

        @fuzz(300)
        @given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=6), st.integers(0, len(original)))
        def case(flips, keep):
            data = bytearray(original[: max(keep, 1)])
            for offset, value in flips:
                if offset < len(data):
                    data[offset] = value
            image.write_bytes(bytes(data))
            _read_everything(root, "test")

        case()


def test_mutated_manifests_are_a_manifest_or_one_clear_error():
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "artifact"
        folder.mkdir()
        (folder / "model.tflite").write_bytes(b"model bytes")
        (Path(tmp) / "other.tflite").write_bytes(b"model bytes")
        good = {"schema_version": 1, "target": "tflite", "precision": "int8", "file": "model.tflite",
                "sha256": hashlib.sha256(b"model bytes").hexdigest(), "source": {"checkpoint_sha256": "0" * 64}}

        @fuzz(700)
        @given(mutations({"manifest": good}), st.booleans())
        def case(mutation, as_bytes):
            _, manifest = mutation
            text = json.dumps(manifest)
            (folder / MANIFEST).write_bytes(text.encode()[: len(text) // 2] + b"\xff" if as_bytes else text.encode())
            try:
                read = read_manifest(folder)
            except UserError:
                return
            assert read["file"] == "model.tflite" and isinstance(read["schema_version"], int) and isinstance(read["source"], dict)
            assert all(not (isinstance(v, float) and not math.isfinite(v)) for v in read.values())

        case()
