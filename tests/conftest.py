"""Shared fixtures: small synthetic sets, the real 4-frame sample, the trained tiny checkpoint and its artifacts.

The suite runs on pytest-xdist workers (`-n 2` in pyproject.toml): each worker computes with one
thread so that two workers share two cores, and what is costly to build (the artifacts of the
trained tiny checkpoint) is built by whichever worker asks first and read back by the other.
"""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import torch
from filelock import FileLock, Timeout

from converters import TARGETS

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLE = REPO.parent / "shared" / "data" / "interhand26m-real-sample"

torch.set_num_threads(1 if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1 else 2)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with slow tests first, each in its own order. xdist (`--dist loadfile
    --no-loadscope-reorder`) hands out whole modules in this order, so the long end-to-end ones
    start at once and the short ones fill in around them; by test count, the reference
    end-to-end module came last and ran alone for minutes while the other worker idled."""
    slow = {item.module.__name__ for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module.__name__ not in slow)


def _built_once(tmp_path_factory, name: str, build: Callable[[Path], object], wait: bool = True):
    """`build(folder)` run by one worker of the session; the others wait for it and read its result
    (or, with `wait=False`, get None while another worker is building it).

    Without xdist the base temp folder is the session's own, so this is a plain call."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the folder every worker's base temp lives in
    result_file = shared / f"{name}.pickle"
    try:
        with FileLock(str(shared / f"{name}.lock"), timeout=-1 if wait else 0):
            if result_file.is_file():
                return pickle.loads(result_file.read_bytes())
            folder = shared / f"{name}-built"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            result = build(folder)
            result_file.write_bytes(pickle.dumps(result))
            return result
    except Timeout:
        return None


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    from lagchand_edge.data.synth import write_dataset

    def write(folder: Path) -> Path:
        write_dataset(folder / "set", 8, seed=3, split="test", workers=1)
        return folder / "set"
    return _built_once(tmp_path_factory, "synth", write)


@pytest.fixture(scope="session")
def real_root() -> Path:
    if not REAL_SAMPLE.is_dir():
        pytest.fail(f"the real InterHand2.6M sample is expected at {REAL_SAMPLE} (../shared beside the clone)")
    return REAL_SAMPLE


@pytest.fixture(scope="session")
def synth_train_root(tmp_path_factory) -> Path:
    from lagchand_edge.data.synth import write_dataset

    root = tmp_path_factory.mktemp("synth_train") / "set"
    write_dataset(root, 16, seed=5, split="train", workers=1)
    return root


#: A tiny-config checkpoint trained for 6 minutes (tests/assets/README.md has the command): its
#: outputs follow the image by millimetres, so a parity or drift test can see a wrong input.
TINY_TRAINED = REPO / "tests" / "assets" / "tiny_trained.safetensors"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """The trained tiny checkpoint, copied (with its sidecar) so that no test can touch the original."""

    def copy(folder: Path) -> Path:
        for source in (TINY_TRAINED, TINY_TRAINED.with_suffix(".json")):
            shutil.copy(source, folder / source.name)
        return folder / TINY_TRAINED.name
    return _built_once(tmp_path_factory, "ckpt", copy)


class SharedArtifacts(Mapping):
    """One precision's artifact of the tiny checkpoint per target, each built once in the session.

    A target is built on first use by whichever worker asks first. Asking for all of them
    (iterating) first builds those that no other worker is building, so two workers share the work.
    """

    def __init__(self, tmp_path_factory, precision: str, checkpoint: Path, calibration: Path, calib_num: int) -> None:
        self._factory, self._precision, self._done = tmp_path_factory, precision, {}
        self._options = {"checkpoint": checkpoint, "calib_data": calibration, "calib_num": calib_num}

    def _load(self, target: str, wait: bool) -> None:
        from lagchand_edge.convert import build_artifacts

        if target not in self._done:
            result = _built_once(self._factory, f"{self._precision}-{target}", wait=wait,
                                 build=lambda out: build_artifacts(target, self._precision, out, **self._options)[0])
            if result is not None:
                self._done[target] = result

    def __getitem__(self, target: str):
        if target not in TARGETS:
            raise KeyError(target)
        self._load(target, wait=True)
        return self._done[target]

    def __iter__(self) -> Iterator[str]:
        for target in TARGETS:
            self._load(target, wait=False)
        for target in TARGETS:
            self._load(target, wait=True)
        return iter(TARGETS)

    def __len__(self) -> int:
        return len(TARGETS)


@pytest.fixture(scope="session")
def fp32_artifacts(tiny_checkpoint, synth_root, tmp_path_factory) -> SharedArtifacts:
    return SharedArtifacts(tmp_path_factory, "fp32", tiny_checkpoint, synth_root, 4)


@pytest.fixture(scope="session")
def int8_artifacts(tiny_checkpoint, synth_root, tmp_path_factory) -> SharedArtifacts:
    return SharedArtifacts(tmp_path_factory, "int8", tiny_checkpoint, synth_root, 8)
