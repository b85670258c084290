"""torchrun-native drift and evaluation (issue #24): the same report as one process, a failing
rank named, batch-aligned shards, the reference's batch independence, caches wherever roots go."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lagchand_edge.distributed import shard_indices

TORCHRUN = Path(sys.executable).with_name("torchrun")
ONE_THREAD = os.environ | {"OMP_NUM_THREADS": "1"}  # torchrun's default per rank; one process must match it to match bit for bit
PER_RUN = {"timing", "machine"}  # what differs between any two runs: seconds and where it ran


def _cli(*args, launcher=(sys.executable, "-m", "lagchand_edge"), env=ONE_THREAD) -> subprocess.CompletedProcess:
    return subprocess.run([*launcher, *map(str, args)], capture_output=True, text=True, env=env, timeout=600)


def _torchrun(temp: Path, *args) -> subprocess.CompletedProcess:
    """torchrun with its rendezvous folders (torchelastic_*, left behind) in the test's `temp`, not the machine's."""
    return _cli(*args, launcher=(TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "lagchand_edge"),
                env=ONE_THREAD | {"TMPDIR": str(temp)})


def _without_timings(report: dict) -> dict:
    report = {k: v for k, v in report.items() if k not in PER_RUN}
    report["reference"] = {k: v for k, v in report["reference"].items() if k != "inference_seconds"}
    report["artifacts"] = [{k: v for k, v in row.items() if k not in ("inference_seconds", "ms_per_sample")} for row in report["artifacts"]]
    return report


@pytest.fixture(scope="module")
def synth64(tmp_path_factory) -> Path:
    from lagchand_edge.data.synth import write_dataset

    return write_dataset(tmp_path_factory.mktemp("synth64") / "set", 64, seed=11, split="test", workers=1)


def test_shard_blocks_fall_on_batch_boundaries_and_cover_everything():
    for total, count, align in ((100, 3, 8), (64, 2, 8), (7, 2, 1), (5, 4, 1)):
        blocks = [shard_indices(total, (i, count), align) for i in range(count)]
        assert [i for block in blocks for i in block] == list(range(total))
        assert all(block.start % align == 0 for block in blocks)
    assert [len(shard_indices(64, (i, 2), 8)) for i in range(2)] == [32, 32]


def test_the_reference_does_not_depend_on_batching(tiny_checkpoint, synth_root):
    """Why the GPU reference may run batched: eval-mode outputs at batch 8 equal batch 1's within
    float32 rounding. Measured here up to 2e-4 mm (batching changes oneDNN's convolution kernels;
    float32 resolves 8e-6 mm at 100 mm), not the 1e-5 mm the issue hoped for: 50x under the fp32
    gate, which is why the CPU reference still runs one image at a time (tallies exactly equal)."""
    from lagchand_edge.checkpoint import load_checkpoint
    from lagchand_edge.data.interhand import InterHandDataset, collate
    from lagchand_edge.data.transforms import to_model_input
    from lagchand_edge.drift.tally import Aligned
    from lagchand_edge.model import DeployModel, HandPrediction

    dataset = InterHandDataset(synth_root, "test")
    batch = collate([dataset[i] for i in range(8)])
    images, gt = to_model_input(batch["image"]), batch["joints_cam"].numpy().astype(np.float64)
    deploy = DeployModel(load_checkpoint(tiny_checkpoint), deployed_form=False).eval()
    with torch.no_grad():
        batched = HandPrediction.from_outputs(deploy(images))
        single = HandPrediction.from_outputs([torch.cat(p) for p in zip(*(deploy(images[i : i + 1]) for i in range(8)), strict=True)])
    a, b = Aligned.of(batched, gt), Aligned.of(single, gt)
    assert np.abs(a.vertices - b.vertices).max() < 1e-3 and np.abs(a.joints - b.joints).max() < 1e-3
    assert np.ptp(a.vertices[:, 0, :, 0], axis=0).max() > 1.0  # the images differ by millimetres: the check is not of a constant


@pytest.mark.slow
def test_torchrun_drift_and_evaluate_equal_one_process(fp32_artifacts, tiny_checkpoint, synth64, tmp_path):
    artifact = fp32_artifacts["executorch"].path
    common = [artifact, "--checkpoint", tiny_checkpoint, "--data", synth64, "--worst-k", "2"]
    one = _cli("drift", *common, "--out", tmp_path / "one")
    two = _torchrun(tmp_path, "drift", *common, "--out", tmp_path / "two")
    assert one.returncode == two.returncode == 0, two.stderr[-2000:]
    single, launched = (json.loads((tmp_path / name / "report.json").read_text()) for name in ("one", "two"))
    assert launched["data"]["samples"] == 64 and launched["machine"]["ranks"] == 2
    assert _without_timings(launched) == _without_timings(single)  # bit for bit: every tally, every worst sample
    assert "Throughput (samples/s per process): reading" in two.stdout
    evaluate = ["evaluate", "--data", synth64, "--checkpoint", tiny_checkpoint, "--batch-size", "8", "--json"]
    one, two = _cli(*evaluate), _torchrun(tmp_path, *evaluate)
    assert one.returncode == two.returncode == 0 and json.loads(two.stdout) == json.loads(one.stdout), two.stderr[-2000:]


@pytest.mark.slow
def test_a_failing_rank_fails_the_run_with_its_record_named(fp32_artifacts, tiny_checkpoint, synth64, tmp_path):
    from lagchand_edge.data.interhand import InterHandDataset

    broken = tmp_path / "set"
    subprocess.run(["cp", "-r", synth64, broken], check=True)
    record = InterHandDataset(broken, "test").records[50]  # rank 1's block of 64 samples in batches of 8
    record.image_path.write_bytes(b"not a jpeg")
    done = _torchrun(tmp_path, "drift", fp32_artifacts["executorch"].path, "--checkpoint", tiny_checkpoint, "--data", broken, "--strict",
                     "--out", tmp_path / "out")
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode != 0 and len(lines) == 1, done.stderr[-2000:]  # said once, by rank 0
    assert lines[0].startswith("error: rank 1 of 2: ") and str(record.image_path.name) in lines[0]
    assert not (tmp_path / "out").exists()


def test_drift_evaluate_and_calibration_read_a_cache(fp32_artifacts, tiny_checkpoint, synth_root, tmp_path):
    from calibration.select import select_calibration
    from lagchand_edge.checkpoint import load_checkpoint
    from lagchand_edge.data.cache import CachedDataset, write_cache
    from lagchand_edge.data.interhand import InterHandDataset
    from lagchand_edge.drift.harness import run_drift
    from lagchand_edge.drift.report import build_report
    from lagchand_edge.evaluate import evaluate_model

    write_cache(synth_root, "test", tmp_path / "cache", workers=0)
    cached, read = CachedDataset(tmp_path / "cache", "test"), InterHandDataset(synth_root, "test")
    model, artifact = load_checkpoint(tiny_checkpoint), fp32_artifacts["tflite"].path
    reports = [build_report(run_drift(model, tiny_checkpoint, dataset, [artifact], worst_k=0), None, None, None) for dataset in (read, cached)]
    assert reports[1]["reference"]["accuracy"] == reports[0]["reference"]["accuracy"]
    assert reports[1]["artifacts"][0]["drift"] == reports[0]["artifacts"][0]["drift"]
    assert set(reports[1]["timing"]["samples_per_second"]) == {"reading", "reference", "tflite-fp32"}
    assert evaluate_model(model, cached)["mpjpe"] == evaluate_model(model, read)["mpjpe"]
    from_cache, from_root = select_calibration(tmp_path / "cache", 4), select_calibration(synth_root, 4)
    assert from_cache.ids == from_root.ids and torch.equal(from_cache.images, from_root.images)
