"""Shared fixtures: a small synthetic set (made once per session) and the real 4-frame sample."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLE = REPO.parent / "shared" / "data" / "interhand26m-real-sample"

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    from lagchand_edge.data.synth import write_dataset

    root = tmp_path_factory.mktemp("synth") / "set"
    write_dataset(root, 8, seed=3, split="test", workers=1)
    return root


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
    folder = tmp_path_factory.mktemp("ckpt")
    for source in (TINY_TRAINED, TINY_TRAINED.with_suffix(".json")):
        shutil.copy(source, folder / source.name)
    return folder / TINY_TRAINED.name


@pytest.fixture(scope="session")
def fp32_artifacts(tiny_checkpoint, synth_root, tmp_path_factory) -> dict:
    from lagchand_edge.convert import build_artifacts

    out = tmp_path_factory.mktemp("fp32")
    return {r.target: r for r in build_artifacts("all", "fp32", out, tiny_checkpoint, calib_data=synth_root, calib_num=4)}


@pytest.fixture(scope="session")
def int8_artifacts(tiny_checkpoint, synth_root, tmp_path_factory) -> dict:
    from lagchand_edge.convert import build_artifacts

    out = tmp_path_factory.mktemp("int8")
    return {r.target: r for r in build_artifacts("all", "int8", out, tiny_checkpoint, calib_data=synth_root, calib_num=8)}
