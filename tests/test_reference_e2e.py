"""End to end on the reference config with the bundled checkpoint (slow, still run in CI)."""

import numpy as np
import pytest
import torch

from calibration.select import select_calibration
from lagchand_edge.artifact import load_runner
from lagchand_edge.checkpoint import bundled_checkpoint, load_checkpoint
from lagchand_edge.convert import build_artifacts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def eval_root(tmp_path_factory):
    from lagchand_edge.data.synth import write_dataset

    root = tmp_path_factory.mktemp("ref_eval") / "set"
    write_dataset(root, 32, seed=77, split="test", workers=2)
    return root


@pytest.fixture(scope="module")
def reference_fp32(eval_root, tmp_path_factory):
    """Each target's fp32 artifact of the bundled checkpoint, built once for the tests that need it."""
    built = {}

    def artifact(target: str):
        if target not in built:
            (built[target],) = build_artifacts(target, "fp32", tmp_path_factory.mktemp(f"{target}-fp32"), calib_data=eval_root, calib_num=8)
        return built[target]
    return artifact


def test_reference_qat_converts_and_drifts_end_to_end(eval_root, tmp_path):
    """#19's path on the reference config: `qat --target tflite` (two steps: the path, not the
    accuracy), `convert --qat`, `drift` against the original FP32 checkpoint. The all-W8A8 artifact
    stays within the bounds of a working int8 one (PTQ 3.9 mm on 200 samples; an int8 with a
    broken op, such as the hand mix's per-channel constant, drifted 30-45 mm)."""
    from calibration.qat import QATOptions, train_qat
    from lagchand_edge.artifact import read_manifest
    from lagchand_edge.data.interhand import InterHandDataset
    from lagchand_edge.drift.harness import run_drift
    from lagchand_edge.drift.report import build_report
    from lagchand_edge.io import file_sha256

    checkpoint = tmp_path / "qat.safetensors"
    train_qat(QATOptions(target="tflite", data=eval_root, split="test", out=checkpoint, epochs=1, batch_size=4, limit=8, calib_num=8))
    (int8,) = build_artifacts("tflite", "int8", tmp_path / "art", calib_data=eval_root, calib_num=16, qat=checkpoint)
    manifest = read_manifest(int8.path)
    assert manifest["source"]["checkpoint_sha256"] == file_sha256(bundled_checkpoint())  # drift compares with the original
    assert manifest["qat"]["checkpoint_sha256"] == file_sha256(checkpoint) and manifest["recipe"]["int8_plan"]["static_w8a8"] == ["model"]
    run = run_drift(load_checkpoint(), bundled_checkpoint(), InterHandDataset(eval_root, "test"), [int8.path])
    [row] = build_report(run)["artifacts"]
    print(f"reference QAT (2 steps) LiteRT all-W8A8: ΔMPJPE {row['delta_mpjpe_mm']:+.3f} mm")
    assert abs(row["delta_mpjpe_mm"]) < 10.0 and row["drift"]["vertex_drift_mm"]["p95"] < 30.0


def test_bundled_checkpoint_loads_as_the_reference():
    model = load_checkpoint()
    assert model.cfg.name == "reference" and bundled_checkpoint().stat().st_size < 20e6


@pytest.mark.parametrize("target", ["executorch", "tflite", "coreml"])
def test_reference_fp32_and_int8_artifacts(target, eval_root, reference_fp32, tmp_path):
    """Issue goals on 32 samples: fp32 within 0.01 mm of the model, int8 ΔMPJPE <= 1 mm (harness)."""
    from lagchand_edge.data.interhand import InterHandDataset
    from lagchand_edge.drift.harness import run_drift
    from lagchand_edge.drift.report import build_report

    calib = select_calibration(eval_root, 32)
    fp32 = reference_fp32(target)
    if target != "coreml":  # CoreML fp32 runs in coreml-sim within 1e-4 relative (next test)
        with torch.no_grad():
            vertices = load_checkpoint()(calib.images[:8])[0].numpy()
        assert np.abs(load_runner(fp32.path)(calib.images[:8].numpy()).vertices - vertices).max() * 1000 <= 0.01  # mm
    (int8,) = build_artifacts(target, "int8", tmp_path / "int8", calib_data=eval_root, calib_num=32)
    run = run_drift(load_checkpoint(), bundled_checkpoint(), InterHandDataset(eval_root, "test"), [fp32.path, int8.path])
    rows = {r["precision"]: r for r in build_report(run)["artifacts"]}
    ratio = int8.size_bytes / fp32.size_bytes
    drift = rows["int8"]["drift"]["vertex_drift_mm"]["mean"]
    print(f"{target} int8: ΔMPJPE {rows['int8']['delta_mpjpe_mm']:+.3f} mm, mean vertex drift {drift:.2f} mm, size {ratio:.1%} of fp32")
    assert rows["fp32"]["verdict"] == "PASS" and rows["int8"]["verdict"] == "PASS"
    assert abs(rows["int8"]["delta_mpjpe_mm"]) <= 1.0
    assert ratio <= 0.30  # the size goal (README, "Measured": 29.0-30.0 %)


def test_reference_coreml_fp32_and_fp16_in_the_interpreter(eval_root, reference_fp32, tmp_path):
    from lagchand_edge.data.interhand import InterHandDataset
    from lagchand_edge.drift.harness import run_drift
    from lagchand_edge.drift.report import build_report

    fp32 = reference_fp32("coreml")
    (fp16,) = build_artifacts("coreml", "fp16", tmp_path / "fp16")
    images = select_calibration(eval_root, 4).images
    with torch.no_grad():
        want = [t.numpy() for t in load_checkpoint()(images)[:3]]
    got = load_runner(fp32.path)(images.numpy())
    for name, reference in zip(("vertices", "joints", "camera"), want, strict=True):
        assert np.abs(getattr(got, name) - reference).max() / np.abs(reference).max() <= 1e-4, name
    run = run_drift(load_checkpoint(), bundled_checkpoint(), InterHandDataset(eval_root, "test"), [fp32.path, fp16.path])
    rows = {r["precision"]: r for r in build_report(run)["artifacts"]}
    assert rows["fp32"]["runtime"] == "coreml-sim" and rows["fp32"]["verdict"] == "PASS"
    print(f"coreml fp16 in coreml-sim: ΔMPJPE {rows['fp16']['delta_mpjpe_mm']:.4f} mm")
    assert rows["fp16"]["verdict"] == "PASS" and abs(rows["fp16"]["delta_mpjpe_mm"]) <= 0.1


def test_bundled_checkpoint_beats_the_mean_pose_baseline(tmp_path):
    from lagchand_edge.data.interhand import InterHandDataset
    from lagchand_edge.data.synth import write_dataset
    from lagchand_edge.evaluate import MeanPoseBaseline, evaluate_model, mean_hands

    train = write_dataset(tmp_path / "train", 1000, seed=1, split="train", workers=2)  # the training set's first 1000 samples
    test = write_dataset(tmp_path / "test", 300, seed=2, split="test", workers=2)  # the model card's held-out test set
    dataset = InterHandDataset(test, "test")
    model = evaluate_model(load_checkpoint(), dataset)
    baseline = evaluate_model(MeanPoseBaseline(*mean_hands(InterHandDataset(train, "train"))), dataset)["mpjpe"]
    ratio, rotation, pixels = model["mpjpe"] / baseline, model["rotation_error_deg_median"], model["joint_2d_err_px_median"]
    print(f"bundled checkpoint MPJPE {model['mpjpe']:.2f} mm, mean-pose baseline {baseline:.2f} mm, ratio {ratio:.3f}, "
          f"rotation {rotation:.1f} deg, 2D {pixels:.1f} px")
    # The model card's figures on its own test set (ratio 0.408 with all 20000 training samples' mean, rotation 13.7 deg,
    # 2D 12.8 px), with a margin; of #18's goals (0.30, 15 deg, 6 px) rotation is met. The first checkpoint: ratio 1.01 here.
    assert ratio <= 0.43 and rotation <= 15.0 and pixels <= 13.5


def test_bundled_checkpoint_on_the_real_frames(real_root):
    """The two real two-hand frames (never trained on): #18's real-frame goal is a median rotation error <= 30 deg,
    which stages 2-4 met and the bundled stage 5 does not (one hand of four turned palm-over: model card)."""
    from lagchand_edge.data.interhand import InterHandDataset
    from lagchand_edge.evaluate import evaluate_model

    model = evaluate_model(load_checkpoint(), InterHandDataset(real_root, "test"))
    print(f"real frames: MPJPE {model['mpjpe']:.2f} mm, rotation {model['rotation_error_deg_median']:.1f} deg")
    assert model["rotation_error_deg_median"] <= 60.0 and model["mpjpe"] <= 37.0  # measured 56.4 deg, 35.2 mm
