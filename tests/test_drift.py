"""The drift harness: metric math on hand-made outputs, gate exit codes, shard/merge, report files."""

import hashlib
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lagchand_edge.distributed import shard_indices
from lagchand_edge.drift.harness import DriftRun, Entry, merge_runs, parse_shard
from lagchand_edge.drift.report import VISIBLE_DRIFT_MM, artifact_row, build_report
from lagchand_edge.drift.tally import AccuracyTally, Aligned, DriftTally, WorstSample
from lagchand_edge.errors import UserError
from lagchand_edge.metrics import evaluate_hands
from lagchand_edge.model import HandPrediction


def _prediction(rng, batch=3, vertices=40, scale=0.05) -> HandPrediction:
    joints = rng.normal(0, scale, (batch, 2, 21, 3)).astype(np.float32)
    verts = rng.normal(0, scale, (batch, 2, vertices, 3)).astype(np.float32)
    camera = np.tile(np.array([2.0, 0.1, -0.1], np.float32), (batch, 2, 1))
    return HandPrediction(verts, joints, camera)


def test_accuracy_tally_matches_the_metrics_module():
    rng = np.random.default_rng(0)
    pred = _prediction(rng)
    gt_joints = rng.normal(0, 50, (3, 2, 21, 3))
    gt_vertices = rng.normal(0, 50, (3, 2, 40, 3))
    valid = rng.random((3, 2, 21)) > 0.2
    tally = AccuracyTally()
    tally.update(Aligned.of(pred, gt_joints), gt_joints, gt_vertices, valid)
    expected = evaluate_hands(pred.joints, gt_joints, pred.vertices, gt_vertices, valid)
    got = tally.summary()
    for key in ("mpjpe", "mpjpe_left", "mpjpe_right", "mpvpe"):
        assert got[key] == pytest.approx(expected[key], abs=1e-5)
    assert got["per_joint"] == pytest.approx(expected["per_joint"], abs=1e-3)


def test_drift_tally_on_a_known_offset():
    rng = np.random.default_rng(1)
    ref = _prediction(rng)
    shifted = HandPrediction(ref.vertices + np.float32(0.002), ref.joints + np.float32(0.002), ref.camera.copy())  # 2 mm on x, y, z
    gt = rng.normal(0, 50, (3, 2, 21, 3))
    tally = DriftTally(worst_k=2)
    tally.update(Aligned.of(shifted, gt), Aligned.of(ref, gt), 0, ["a", "b", "c"], np.zeros((3, 256, 256, 3), np.uint8))
    summary = tally.summary()
    distance = 2 * np.sqrt(3)
    assert summary["vertex_drift_mm"]["mean"] == pytest.approx(distance, rel=1e-4)
    assert summary["vertex_drift_mm"]["max"] == pytest.approx(distance, rel=1e-4)
    assert summary["per_joint_drift_mm"] == pytest.approx([distance] * 21, rel=1e-4)
    signal = float(((ref.vertices * 1000.0) ** 2).sum())
    noise = float(((shifted.vertices * 1000.0 - ref.vertices * 1000.0) ** 2).sum())
    assert summary["snr_db"]["vertices"] == pytest.approx(10 * np.log10(signal / noise), abs=1e-3)
    assert summary["snr_db"]["camera"] is None  # identical outputs
    assert len(summary["worst"]) == 2


def _run_with(delta_mm: float, precision: str) -> DriftRun:
    reference = AccuracyTally(np.full((2, 21), 10 * 10**6, dtype=object), np.ones((2, 21), dtype=object))
    artifact = AccuracyTally(np.full((2, 21), int((10 + delta_mm) * 10**6), dtype=object), np.ones((2, 21), dtype=object))
    drift = DriftTally(0, [delta_mm], np.zeros(21, dtype=object), 2, {"vertices": 1}, {"vertices": 1})
    entry = Entry(Path(f"a-{precision}"), {"target": "tflite", "precision": precision, "sha256": "x"},
                  accuracy=artifact, drift=drift)
    return DriftRun({"sha256": "r", "checkpoint": "c", "config": "tiny"}, {"root": "d", "total": 1}, (0, 1), [entry], reference, ["s"],
                    1.0, 1.0, {"reference_device": "cpu"})


@pytest.mark.parametrize(("precision", "delta", "verdict"), [("fp32", 0.005, "PASS"), ("fp32", 0.02, "FAIL"), ("fp16", 0.05, "PASS"),
                                                              ("int8", 0.9, "PASS"), ("int8", -1.5, "FAIL")])
def test_gate_defaults_by_precision(precision, delta, verdict):
    report = build_report(_run_with(delta, precision))
    assert report["artifacts"][0]["verdict"] == verdict
    assert report["artifacts"][0]["delta_mpjpe_mm"] == pytest.approx(delta, abs=1e-6)
    assert report["passed"] is (verdict == "PASS")


def test_gate_threshold_override():
    run = _run_with(0.5, "int8")
    entry = run.entries[0]
    reference = run.reference_accuracy.summary()
    assert artifact_row(entry, reference, 0.1, None)["verdict"] == "FAIL"
    assert artifact_row(entry, reference, None, None)["verdict"] == "PASS"
    # the opt-in gate on drift from FP32's outputs (p95 of per-sample vertex drift: 0.5 mm here)
    row = artifact_row(entry, reference, None, None, max_vertex_drift=0.4)
    assert row["verdict"] == "FAIL" and row["failed_gates"] == ["p95 vertex drift"]
    assert artifact_row(entry, reference, None, None, max_vertex_drift=0.6)["verdict"] == "PASS"


def test_shards_are_contiguous_and_cover_everything():
    blocks = [shard_indices(10, (i, 3)) for i in range(3)]
    assert [list(b) for b in blocks] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    assert parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "x", "1/0"):
        with pytest.raises(UserError):
            parse_shard(bad)
    with pytest.raises(UserError, match="exactly once"):
        merge_runs([_run_with(0.1, "int8")] * 2)


def test_merged_shards_count_each_skipped_record_once():
    """Every shard indexes the whole data set (and counts its bad records); only load failures are its own."""
    shards = []
    for index, unreadable in enumerate((1, 0, 2)):
        run = _run_with(0.1, "int8")
        run.shard, run.reading_seconds = (index, 3), 0.5
        run.data["skipped"] = {"no image": 4} | ({"unreadable at load time": unreadable} if unreadable else {})
        shards.append(run)
    merged = merge_runs(shards)
    assert merged.data["skipped"] == {"no image": 4, "unreadable at load time": 3} and merged.reading_seconds == 1.5


# ------------------------------------------------------------------ end to end on tiny artifacts


def _drift(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lagchand_edge", "drift", *map(str, args)], capture_output=True, text=True, cwd=cwd)


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])


@pytest.fixture(scope="module")
def drift_inputs(fp32_artifacts, int8_artifacts, tmp_path_factory):
    folder = tmp_path_factory.mktemp("artifacts")
    for results in (fp32_artifacts, int8_artifacts):
        for result in results.values():
            shutil.copytree(result.path, folder / result.path.name)
    return folder


def test_drift_end_to_end_report_and_gate(drift_inputs, tiny_checkpoint, synth_root, tmp_path):
    out = tmp_path / "report"
    done = _drift(drift_inputs, "--checkpoint", tiny_checkpoint, "--data", synth_root, "--out", out, "--worst-k", "2")
    report = json.loads((out / "report.json").read_text())
    rows = {r["artifact"]: r for r in report["artifacts"]}
    assert rows["executorch-fp32"]["verdict"] == "PASS" and rows["tflite-fp32"]["verdict"] == "PASS", done.stdout
    assert abs(rows["executorch-fp32"]["delta_mpjpe_mm"]) <= 0.01
    assert rows["coreml-fp32"]["verdict"] == "PASS" and rows["coreml-fp32"]["runtime"] == "coreml-sim"
    assert "coreml-sim speed" in done.stdout
    assert rows["executorch-int8"]["drift"]["vertex_drift_mm"]["max"] > rows["executorch-fp32"]["drift"]["vertex_drift_mm"]["max"]
    assert done.returncode == 0 and report["passed"]  # every artifact of the trained test model passes the default gates
    assert report["data"]["samples"] == 8 and len(report["sample_ids"]) == 8
    parser = _Images()
    parser.feed((out / "report.html").read_text())
    assert len(parser.images) >= 4 and all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert (out / "report.md").read_text().count("|") > 20
    page = (out / "report.html").read_text()
    for i, row in enumerate(report["artifacts"]):  # worst samples drawn where drift is visible, a note where it is not
        assert (out / f"{i:02d}-{row['artifact']}-worst1.png").exists() == (row["drift"]["vertex_drift_mm"]["p95"] >= VISIBLE_DRIFT_MM)
    assert "No worst-sample pictures" in page  # the fp32 rows: 0.000 mm is not worth four pictures
    ids, links = set(re.findall(r'id="([^"]+)"', page)), set(re.findall(r'href="#([^"]+)"', page))
    assert len(ids) >= 1 + len(rows) and links <= ids  # a section per artifact, and the contents lead to them
    assert "`" not in re.sub(r"<pre>.*?</pre>", "", page, flags=re.S)  # Markdown's backticks rendered as code, not shown
    for gate, name in (("--max-mpjpe-drift", "ΔMPJPE"), ("--max-mpvpe-drift", "ΔMPVPE"), ("--max-vertex-drift", "p95 vertex drift")):
        strict = _drift(drift_inputs / "executorch-int8", "--checkpoint", tiny_checkpoint, "--data", synth_root, "--out", tmp_path / gate,
                        gate, "0")
        (row,) = json.loads((tmp_path / gate / "report.json").read_text())["artifacts"]
        assert strict.returncode == 1 and "FAIL" in strict.stdout and row["failed_gates"] == [name], (gate, row["failed_gates"])


def test_worst_sample_pictures_show_the_truth_fp32_and_the_artifact(tmp_path):
    """Three colours and a legend: a model error (green far from yellow) and a drift (magenta far from green) look different."""
    from lagchand_edge.drift.report import ARTIFACT, FP32, TRUTH, draw_worst

    image = np.zeros((256, 256, 3), np.uint8)
    line = np.stack([np.linspace(40, 200, 21), np.full(21, 60.0)], -1)
    truth, reference, artifact = (np.stack([line + (0, dy), line + (0, dy + 20)]) for dy in (0, 60, 120))
    sample = WorstSample(3.0, 0, "0/0/0", image, (reference, np.zeros((2, 0, 2))), (artifact, np.zeros((2, 0, 2))), truth)
    entry = Entry(Path("tflite-int8"), drift=DriftTally(1, worst=[sample]))
    run = DriftRun({}, {}, (0, 1), [entry], AccuracyTally(), ["0/0/0"], 0.0, 0.0, {}, None)
    draw_worst(run, entry, 0, tmp_path / "worst.png")
    picture = np.asarray(Image.open(tmp_path / "worst.png"))
    for colour, (x, y) in ((TRUTH, truth[0, 10]), (FP32, reference[0, 10]), (ARTIFACT, artifact[0, 10])):
        patch = picture[int(2 * y) - 2 : int(2 * y) + 3, int(2 * x) - 2 : int(2 * x) + 3].reshape(-1, 3).astype(int)
        assert (np.abs(patch - colour).max(axis=1) < 40).any(), colour  # each drawn where it belongs, at twice the crop's size
    legend = picture[6:19, 6:19].reshape(-1, 3).astype(int)
    assert (np.abs(legend - TRUTH).max(axis=1) < 10).mean() > 0.5  # the legend's first swatch


def test_shard_merge_equals_one_process(drift_inputs, tiny_checkpoint, synth_root, tmp_path):
    artifacts = [drift_inputs / "tflite-int8", drift_inputs / "executorch-fp32"]
    common = ["--checkpoint", tiny_checkpoint, "--data", synth_root, "--worst-k", "2"]
    assert _drift(*artifacts, *common, "--out", tmp_path / "full").returncode == 0
    for i in range(3):
        assert _drift(*artifacts, *common, "--shard", f"{i}/3", "--out", tmp_path / f"s{i}").returncode == 0
    merged = _drift("merge", *(tmp_path / f"s{i}" for i in range(3)), "--out", tmp_path / "merged")
    assert merged.returncode == 0 and "Traceback" not in merged.stderr, merged.stderr
    full = json.loads((tmp_path / "full" / "report.json").read_text())
    joined = json.loads((tmp_path / "merged" / "report.json").read_text())
    assert joined["sample_ids"] == full["sample_ids"]
    assert joined["reference"]["accuracy"] == full["reference"]["accuracy"]
    for a, b in zip(joined["artifacts"], full["artifacts"], strict=True):
        assert a["accuracy"] == b["accuracy"] and a["drift"] == b["drift"]  # exactly equal, not approximately


def test_results_do_not_depend_on_the_batch_size(drift_inputs, tiny_checkpoint, synth_root):
    """The README promises it (shards and merges rely on it): batch 1 and batch 5 give equal tallies."""
    from lagchand_edge.checkpoint import load_checkpoint
    from lagchand_edge.data.interhand import InterHandDataset
    from lagchand_edge.drift.harness import run_drift

    model, dataset = load_checkpoint(tiny_checkpoint), InterHandDataset(synth_root, "test")
    runs = [run_drift(model, tiny_checkpoint, dataset, [drift_inputs / "tflite-int8"], batch_size=size, worst_k=0) for size in (1, 5)]
    reports = [build_report(run, None, None, None) for run in runs]
    assert reports[0]["reference"]["accuracy"] == reports[1]["reference"]["accuracy"]
    (a,), (b,) = (report["artifacts"] for report in reports)
    assert a["status"] == b["status"] == "RUN" and a["accuracy"] == b["accuracy"] and a["drift"] == b["drift"]  # exactly


def test_bad_inputs_are_clear(drift_inputs, tiny_checkpoint, synth_root, tmp_path):
    from lagchand_edge.checkpoint import bundled_checkpoint

    mismatch = _drift(drift_inputs / "tflite-fp32", "--checkpoint", bundled_checkpoint(), "--data", synth_root, "--out", tmp_path / "m")
    assert mismatch.returncode == 2 and "another checkpoint" in mismatch.stderr and "Traceback" not in mismatch.stderr
    allowed = _drift(drift_inputs / "tflite-fp32", "--checkpoint", bundled_checkpoint(), "--data", synth_root, "--out", tmp_path / "a",
                     "--allow-mismatch")
    (row,) = json.loads((tmp_path / "a" / "report.json").read_text())["artifacts"]
    assert allowed.returncode == 1 and row["verdict"] == "FAIL"  # it ran, and the gate shows the other model's outputs
    broken = tmp_path / "broken"
    shutil.copytree(drift_inputs / "tflite-fp32", broken)
    (broken / "model.tflite").write_bytes(b"not a model")
    done = _drift(broken, drift_inputs / "executorch-fp32", "--checkpoint", tiny_checkpoint, "--data", synth_root, "--out", tmp_path / "b")
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert [r["verdict"] for r in report["artifacts"]] == ["ERROR", "PASS"] and done.returncode == 1
    assert "sha256" in report["artifacts"][0]["reason"]
    corrupt = tmp_path / "corrupt"  # a corrupt model whose manifest sha256 was re-computed: it fails to load, alone
    shutil.copytree(drift_inputs / "executorch-fp32", corrupt)
    (corrupt / "model.pte").write_bytes(b"\x00" * 64)
    manifest = json.loads((corrupt / "manifest.json").read_text())
    (corrupt / "manifest.json").write_text(json.dumps(manifest | {"sha256": hashlib.sha256(b"\x00" * 64).hexdigest()}))
    done = _drift(corrupt, drift_inputs / "tflite-fp32", "--checkpoint", tiny_checkpoint, "--data", synth_root, "--out", tmp_path / "c")
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert [r["verdict"] for r in report["artifacts"]] == ["ERROR", "PASS"] and done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    again = _drift(drift_inputs / "executorch-fp32", "--checkpoint", tiny_checkpoint, "--data", synth_root, "--out", tmp_path / "b")
    assert again.returncode == 2 and "--force" in again.stderr
    for missing in ([tmp_path / "nowhere"], [drift_inputs / "tflite-fp32", "--data", tmp_path / "no-data"]):  # refused before any rendering
        done = _drift(*missing, "--checkpoint", tiny_checkpoint, "--out", tmp_path / "d")
        assert done.returncode == 2 and done.stderr.strip().endswith(": not found") and not (tmp_path / "d").exists(), done.stderr


def test_per_layer_sensitivity_ranks_modules(tiny_checkpoint, synth_root):
    from calibration.select import select_calibration
    from calibration.sensitivity import layer_sensitivity
    from lagchand_edge.checkpoint import load_checkpoint
    from lagchand_edge.data.interhand import InterHandDataset
    from lagchand_edge.data.transforms import to_model_input

    chosen = select_calibration(synth_root, 4)
    samples = [InterHandDataset(synth_root, "test").load(i) for i in range(4)]
    gt = np.stack([s["joints_cam"] for s in samples]).astype(np.float64)
    images = to_model_input(np.stack([s["image"] for s in samples]))
    # the whole model and nothing at all are modules whose answers are known: quantizing only "model" is
    # the all-int8 program, and everything but "model" is the FP32 model itself
    result = layer_sensitivity(load_checkpoint(tiny_checkpoint), chosen.images, images, gt, modules=["model.graph.head", "model"])
    rows = {r["module"]: r for r in result["ranking"]}
    assert result["all_int8_mm"] > 0 and result["samples"] == 4 and result["calibration_samples"] == 4
    assert rows["model"]["only_this_int8_mm"] == pytest.approx(result["all_int8_mm"], rel=1e-6)
    assert rows["model"]["all_but_this_int8_mm"] < 1e-3  # float rounding only: batch 1 vs the batch
    assert rows["model"]["all_but_this_delta_mpjpe_mm"] < 1e-3
    assert 0 < rows["model.graph.head"]["only_this_int8_mm"] < result["all_int8_mm"]  # one small layer drifts less than all
    assert [r["module"] for r in result["ranking"]] == ["model", "model.graph.head"]
