"""Profiling: statistics, records, foreign models, op breakdowns, the torch-free device runner, anchors."""

import hashlib
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from apps.device_runner import device_runner
from lagchand_edge.errors import UserError
from lagchand_edge.profile import anchors

RECORD_KEYS = {"schema", "model", "sha256", "size_bytes", "runtime", "runtime_version", "threads", "inputs", "load_ms", "first_inference_ms",
               "latency_ms", "latencies_ms", "stability", "peak_rss_increase_mb", "cpu", "machine", "platform", "python"}


def test_latency_statistics():
    values = [float(v) for v in range(1, 11)]  # 1..10 ms
    stats = device_runner.latency_stats(values[::-1])
    assert stats["min"] == 1 and stats["max"] == 10 and stats["runs"] == 10
    assert stats["p50"] == pytest.approx(5.5) and stats["mean"] == pytest.approx(5.5)
    assert stats["p90"] == pytest.approx(np.percentile(values, 90))
    assert stats["std"] == pytest.approx(np.std(values))
    assert stats["trimmed_mean"] == pytest.approx(np.mean(values[1:9]))  # middle 80%
    assert stats["throughput_per_s"] == pytest.approx(1000 / 5.5)


def test_unstable_series_raise_runs_and_say_so():
    calls = {"n": 0}

    def call():  # the first series is fast, everything after it three times slower
        calls["n"] += 1
        time.sleep(0.001 if calls["n"] <= 6 else 0.003)

    latencies, stability = device_runner.stable_latencies(call, warmup=1, runs=5)
    assert len(stability["attempts"]) >= 2 and stability["attempts"][0]["difference"] > 0.1
    assert "raised" in stability["note"] and stability["attempts"][1]["runs"] == 10


def test_series_that_never_agree_are_retried_twice_at_most(monkeypatch):
    series = iter([[1.0] * 5, [2.0] * 5, [1.0] * 10, [2.0] * 10, [1.0] * 20, [2.0] * 20])  # always 100% apart
    monkeypatch.setattr(device_runner, "time_calls", lambda call, warmup, runs: next(series))
    latencies, stability = device_runner.stable_latencies(lambda: None, warmup=1, runs=5)
    assert [a["runs"] for a in stability["attempts"]] == [5, 10, 20] and [a["warmup"] for a in stability["attempts"]] == [1, 2, 4]
    assert stability["note"].startswith("unstable after 2 retries") and len(latencies) == 40  # the last attempt's two series


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


@pytest.fixture(scope="module")
def foreign_models(tmp_path_factory):
    """A .tflite and a .pte that lagchand-edge did not make (no manifest)."""
    import litert_torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    folder = tmp_path_factory.mktemp("foreign")
    model, example = _Tiny().eval(), (torch.rand(1, 3, 32, 32),)
    litert_torch.convert(model, example).export(str(folder / "tiny.tflite"))
    program = to_edge_transform_and_lower(torch.export.export(model, example), partitioner=[XnnpackPartitioner()]).to_executorch()
    (folder / "tiny.pte").write_bytes(program.buffer)
    return folder


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "lagchand_edge", *map(str, args)], capture_output=True, text=True)


def test_profile_foreign_models_with_op_breakdown(foreign_models, tmp_path):
    done = _cli("profile", foreign_models / "tiny.tflite", foreign_models / "tiny.pte", "--runs", "5", "--warmup", "1", "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    session = json.loads((tmp_path / "profile.json").read_text())
    rows = {r["artifact"]: r for r in session["results"]}
    assert set(rows) == {"pytorch-eager-fp32", "tiny.tflite", "tiny.pte"}
    for row in rows.values():
        assert row["status"] == "OK" and RECORD_KEYS <= set(row["record"]) and row["label"] == "host proxy"
        assert row["record"]["latency_ms"]["runs"] >= 10 and row["speedup_vs_eager"] > 0
    assert rows["tiny.pte"]["record"]["inputs"] == [{"shape": [1, 3, 32, 32], "dtype": "float32"}]
    assert "CONV_2D (float32) [delegated (XNNPACK)]" in done.stdout  # printed as text, not read as a style tag
    et_ops = rows["tiny.pte"]["record"]["op_breakdown"]
    assert et_ops["source"].startswith("ETDump") and et_ops["top_ops"] and et_ops["execute_ms"] > 0
    # a call's time splits into its ops' events and what none of them holds
    assert et_ops["delegated_ms"] > 0 and 0 <= et_ops["outside_ops_ms"] < et_ops["execute_ms"]
    assert "outside every op: per-call overhead" in done.stdout
    assert any(o["kind"] == "delegated (XNNPACK)" for o in et_ops["top_ops"])
    lite_ops = rows["tiny.tflite"]["record"]["op_breakdown"]
    assert lite_ops["ops"] >= 2 and 0 <= lite_ops["delegated_fraction"] <= 1
    assert {"CONV_2D (float32)", "FULLY_CONNECTED (float32)"} <= {o["op"] for o in lite_ops["top_ops"]} and lite_ops["isolated_ops_ms"] > 0
    assert rows["pytorch-eager-fp32"]["source_macs"] > 0.6e9  # the bundled reference config, as deployed
    # the foreign .tflite's MACs from its graph: conv 3->8 (3x3) to 30x30, then fc 8->4
    assert rows["tiny.tflite"]["macs"] == 30 * 30 * 8 * 3 * 3 * 3 + 8 * 4 and rows["tiny.pte"]["macs"] is None
    html = (tmp_path / "profile.html").read_text()
    assert "data:image/png;base64," in html and "host proxy" in html
    assert f"{session['machine']['cpu']}, 2 threads" in html.split("</h1>")[0]  # the heading says where and how it ran
    assert "<pre" not in html and "no int8 artifact in this session" in html  # goals: a table, or a sentence, never a JSON dump
    assert html.count("<h3>") == 2 and html.count("<th>op type</th>") == 2  # where the time goes: a table per broken-down model
    assert (tmp_path / "profile.md").is_file() and (tmp_path / "ops.png").is_file()


def test_profile_artifacts_skips_coreml_and_merges_device_records(fp32_artifacts, foreign_models, tmp_path):
    record = tmp_path / "phone.json"
    done = subprocess.run([sys.executable, device_runner.__file__, str(foreign_models / "tiny.tflite"), "--runs", "3", "--warmup", "0",
                           "--label", "pixel-8"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    record.write_text(done.stdout)
    out = tmp_path / "out"
    done = _cli("profile", fp32_artifacts["coreml"].path, "--merge", record, "--runs", "2", "--warmup", "0", "--no-ops", "--out", out, "--json",
                "--repeat", "2")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert len(printed["repeats"]) == 2 and all(len(run["results"]) == 3 for run in printed["repeats"])  # each run: eager, skip, merged
    rows, goals = printed["results"], printed["goals"]
    assert [r["status"] for r in rows] == ["OK", "SKIPPED", "OK"]
    assert goals["int8_speedup_vs_fp32"] == {} and goals["speedup_vs_fp32_goal"] == 2.0  # `--json` carries #19's ratios
    assert "Mac" in rows[1]["reason"] and rows[2]["label"] == "pixel-8" and rows[2]["merged"]
    assert rows[0]["speedup_vs_eager"] == 1 and "speedup_vs_eager" not in rows[2]  # no ratio across devices


def test_device_runner_needs_no_torch(foreign_models):
    guard = (
        "import sys, runpy\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'lagchand_edge', 'converters'):\n"
        "            raise ImportError(f'{name} imported by the device runner')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.argv = ['device_runner.py', {str(foreign_models / 'tiny.tflite')!r}, '--runs', '3', '--warmup', '1', '--threads', '1']\n"
        f"runpy.run_path({device_runner.__file__!r}, run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", guard], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["runtime"] == "litert" and record["threads"] == 1 and RECORD_KEYS <= set(record)


def test_graph_macs_of_an_artifact_match_the_deployed_model(fp32_artifacts, tiny_checkpoint):
    from lagchand_edge.checkpoint import load_checkpoint
    from lagchand_edge.model.deploy import deploy_form, explicit_norms
    from lagchand_edge.model.flops import count_model, deployed_macs

    counted = device_runner.LiteRTModel(fp32_artifacts["tflite"].path / "model.tflite", threads=1).graph_macs()
    model = load_checkpoint(tiny_checkpoint)
    # exactly the LiteRT form's count: its last-axis norms take their variance as a linear layer (weights 1/C)
    assert counted == count_model(explicit_norms(deploy_form(model)), with_heatmaps=False)["modules"][-1]["macs"]
    assert counted == pytest.approx(deployed_macs(model), rel=2e-3)  # what `info` and the profile's GMACs column say


def test_each_litert_op_alone_computes_what_it_computes_in_the_whole_model(int8_artifacts, tiny_checkpoint):
    """The op timer's one-op models (int8 weights' DEQUANTIZE included) reproduce every tensor of a
    reference run, so each time is the time of that op's real work; each op knows its module."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from lagchand_edge.checkpoint import load_checkpoint
    from lagchand_edge.model import DeployModel

    model = device_runner.LiteRTModel(int8_artifacts["tflite"].path / "model.tflite", threads=1)
    timer = device_runner.LiteRTOpTimer(model.path, threads=1)
    inputs = [value for _, value in model.inputs]
    reference = timer.reference_run(inputs)
    for index in timer.timed_ops():
        content, fed = timer.op_model(index)
        alone = Interpreter(model_content=content, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        alone.allocate_tensors()
        for detail, tensor in zip(alone.get_input_details(), fed, strict=True):
            alone.set_tensor(detail["index"], reference.get_tensor(tensor))
        alone.invoke()
        for detail, tensor in zip(alone.get_output_details(), timer.graph.operators[index].outputs, strict=True):
            np.testing.assert_array_equal(alone.get_tensor(detail["index"]), reference.get_tensor(int(tensor)))
    rows, untimed = timer.op_times(inputs, warmup=0, runs=1)
    assert untimed == 0 and len(rows) == len(timer.timed_ops()) > 100 and any(r["op"] == "CONV_2D (int8)" for r in rows)
    modules = {name for name, _ in DeployModel(load_checkpoint(tiny_checkpoint)).named_modules()}
    assert {r["module"] for r in rows} <= modules and "model.graph.blocks.2.attention.q" in {r["module"] for r in rows}
    per_module = device_runner.module_times(rows)
    assert per_module["model.encoder"] + per_module["model.graph"] <= per_module["model"] + 1e-9
    assert "model.graph.blocks.2" in per_module and "model.graph.blocks.2.attention" not in per_module  # four levels deep at most


def _row(artifact, target, precision, p50, macs=None, checkpoint="a"):
    return {"artifact": artifact, "target": target, "precision": precision, "status": "OK", "macs": macs, "speedup_vs_eager": 30 / p50,
            "source": {"checkpoint_sha256": checkpoint}, "record": {"latency_ms": {"p50": p50}, "stability": {"note": "stable"}}}


def test_goals_take_the_fastest_int8_artifact_of_each_target():
    from lagchand_edge.profile.report import goal_rows, goals

    session = {"results": [_row("pytorch-eager-fp32", "pytorch", "fp32", 30.0), _row("slow", "tflite", "int8", 12.0, 7e8),
                           _row("fast", "tflite", "int8", 9.0, 7e8), _row("et", "executorch", "int8", 10.0, 7e8),
                           _row("tflite-fp32", "tflite", "fp32", 13.5), _row("other-fp32", "tflite", "fp32", 4.0, checkpoint="b"),
                           _row("et-fp32", "executorch", "fp32", 25.0), _row("coreml-fp32", "coreml", "fp32", 1.0),
                           _row("mediapipe:hand_landmark_full", "tflite", "float (MediaPipe)", 3.0, 3.5e8)]}
    session["results"].append(dict(_row("phone", "tflite", "int8", 1.0), merged=True))  # another device: no ratio with this host's rows
    summary = goals(session)
    assert summary["int8_speedup_vs_eager"] == {"tflite": pytest.approx(30 / 9), "executorch": pytest.approx(3.0)}
    # each int8 artifact against the fastest fp32 one of its own runtime and checkpoint (not another checkpoint's faster one)
    assert summary["int8_speedup_vs_fp32"] == {"tflite": {"int8": "fast", "fp32": "tflite-fp32", "ratio": pytest.approx(1.5)},
                                               "executorch": {"int8": "et", "fp32": "et-fp32", "ratio": pytest.approx(2.5)}}
    assert summary["best_int8_vs_mediapipe_full"] == {"artifact": "fast", "ratio": pytest.approx(3.0), "goal": 1.0,
                                                      "macs_ratio": pytest.approx(2.0)}
    assert summary["int8_vs_mediapipe_two_hands"] == {"artifact": "fast", "ratio": pytest.approx(1.5), "goal": 1.0,
                                                      "macs_ratio": pytest.approx(1.0)}
    assert goal_rows(summary)[1:] == [["int8 tflite speed-up vs eager FP32", "3.33x", ">= 4x", "no"],
                                      ["int8 executorch speed-up vs eager FP32", "3.00x", ">= 4x", "no"],
                                      ["int8 tflite speed-up vs tflite fp32 (fast / tflite-fp32)", "1.50x", ">= 2x", "no"],
                                      ["int8 executorch speed-up vs executorch fp32 (et / et-fp32)", "2.50x", ">= 2x", "yes"],
                                      ["best int8 (fast) / MediaPipe hand_landmark_full p50", "3.00x (it does 2.00x the MACs)", "<= 1x", "no"],
                                      ["best int8 (fast) / 2 x MediaPipe hand_landmark_full p50 (one run per hand)",
                                       "1.50x (it does 1.00x the MACs)", "<= 1x", "no"]]


def test_repeated_goals_are_medians_over_the_runs():
    from lagchand_edge.profile.report import goal_rows, goals

    def run(int8_p50, fp32_p50, anchor_p50):
        return {"results": [_row("pytorch-eager-fp32", "pytorch", "fp32", 30.0), _row("int8", "tflite", "int8", int8_p50),
                            _row("fp32", "tflite", "fp32", fp32_p50), _row("mediapipe:hand_landmark_full", "tflite", "float", anchor_p50)]}

    runs = [run(10.0, 15.0, 4.0), run(10.0, 25.0, 6.0), run(10.0, 22.0, 5.5)]  # int8 / fp32: 1.5x, 2.5x, 2.2x
    summary = goals(dict(runs[0], repeats=runs))
    assert summary["int8_speedup_vs_fp32"]["tflite"]["ratio"] == pytest.approx(1.5)  # the rows are the first run's
    assert summary["repeated"]["int8_speedup_vs_fp32.tflite"] == {"median": pytest.approx(2.2), "min": pytest.approx(1.5),
                                                                  "max": pytest.approx(2.5), "runs": pytest.approx([1.5, 2.5, 2.2])}
    rows = {row[0]: row[1:] for row in goal_rows(summary)[1:]}
    assert rows["int8 tflite speed-up vs tflite fp32 (int8 / fp32)"] == ["1.50x; median of 3 runs 2.20x (1.50-2.50, met in 2)", ">= 2x", "yes"]
    two_hands = rows["best int8 (int8) / 2 x MediaPipe hand_landmark_full p50 (one run per hand)"]  # 1.25x, 0.83x, 0.91x
    assert two_hands == ["1.25x; median of 3 runs 0.91x (0.83-1.25, met in 2)", "<= 1x", "yes"]
    assert "repeated" not in goals(dict(runs[0], repeats=runs[:1]))  # one run: nothing to summarise


def test_a_reversed_run_times_in_the_opposite_order_and_keeps_the_rows_in_place(monkeypatch):
    from lagchand_edge.profile import session

    timed = []

    def profile_artifact(path, model, manifest, settings):
        timed.append(path.name)
        return {"artifact": path.name, "status": "SKIPPED"}

    monkeypatch.setattr(session, "find_artifacts", lambda paths: paths)
    monkeypatch.setattr(session, "model_file", lambda path: (path, {}))
    monkeypatch.setattr(session, "profile_artifact", profile_artifact)
    eager = {"artifact": "eager", "status": "OK", "record": {"latency_ms": {"p50": 1.0}, "cpu": "cpu", "platform": "linux"}}
    monkeypatch.setattr(session, "profile_eager", lambda checkpoint, settings: eager)
    rows = session.run_session([Path("a"), Path("b"), Path("c")], session.Settings(2, 0, 1), reverse=True)["results"]
    assert timed == ["c", "b", "a"] and [row["artifact"] for row in rows] == ["eager", "a", "b", "c"]


def test_op_summary_reads_litert_records_with_and_without_op_times():
    from lagchand_edge.profile.report import op_summary

    counts = {"ops": 10, "delegated_ops": 9, "delegate_partitions": 1, "delegated_fraction": 0.9, "fallback_ops": {"GATHER_ND": 1}}
    timed = counts | {"isolated_ops_ms": 2.5, "untimed_ops": 0, "module_ms": {"model": 2.5, "model.encoder": 2.0, "model.graph": 0.5},
                      "top_ops": [{"op": "CONV_2D (int8)", "kind": "delegated (XNNPACK)", "calls": 3, "ms": 2.0}]}
    lines = op_summary({"artifact": "new", "record": {"latency_ms": {"p50": 2.4}, "op_breakdown": timed}})
    assert lines == ["new: 2.5 ms in ops timed alone (whole model p50 2.4 ms); 9/10 ops in 1 XNNPACK partitions (90.0%); "
                     "outside the delegate: GATHER_ND x1", "  CONV_2D (int8) [delegated (XNNPACK)] x3: 2.00 ms",
                     "  by module: model.encoder 2.00 ms, model.graph 0.50 ms"]
    older = op_summary({"artifact": "old", "record": {"latency_ms": {"p50": 2.4}, "op_breakdown": counts}})  # an older device runner's
    assert older == ["old: 9/10 ops in 1 XNNPACK partitions (90.0%); outside the delegate: GATHER_ND x1"]


def test_bad_profile_inputs(tmp_path, fp32_artifacts):
    fake = tmp_path / "fake.tflite"
    fake.write_text("not a model")
    done = _cli("profile", fake, "--runs", "2", "--out", tmp_path / "o1")
    assert done.returncode == 1 and "Traceback" not in done.stderr  # an unreadable model is an ERROR row (exit 1); the others still run
    row = json.loads((tmp_path / "o1" / "profile.json").read_text())["results"][1]
    assert row["status"] == "ERROR" and "cannot load" in row["reason"]
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for args, message in ((["--threads", "0"], "--threads"), (["--runs", "0"], "--runs"), (["--repeat", "0"], "--repeat"), ([], "not a model")):
        done = _cli("profile", text if message == "not a model" else fake, *args, "--out", tmp_path / "o2")
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def _wheel(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_anchor_extraction_verifies_sha256(tmp_path):
    data = b"tflite bytes"
    expected = {"hand_landmark_full": ("mediapipe/modules/hand_landmark/hand_landmark_full.tflite", hashlib.sha256(data).hexdigest())}
    wheel = _wheel(tmp_path / "mediapipe-0.10.14.whl", {expected["hand_landmark_full"][0]: data, "mediapipe/other.py": b""})
    written = anchors.extract_anchors(wheel, tmp_path / "cache", expected)
    assert [p.name for p in written] == ["hand_landmark_full.tflite"] and written[0].read_bytes() == data
    tampered = _wheel(tmp_path / "bad.whl", {expected["hand_landmark_full"][0]: b"something else"})
    with pytest.raises(UserError, match="sha256"):
        anchors.extract_anchors(tampered, tmp_path / "cache2", expected)
    assert not (tmp_path / "cache2" / "hand_landmark_full.tflite").exists()
    assert anchors.ANCHORS["hand_landmark_full"][1].startswith("11c272b8")


def test_anchor_cache_empty_says_how_to_fill_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LAGCHAND_EDGE_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="anchors fetch"):
        anchors.cached_anchors()


def test_the_terminal_table_keeps_every_artifact_name_whole(capsys):
    """All 16 columns in 160 characters cut every name to "tflite-…"; the terminal shows fewer."""
    from lagchand_edge.cli.profile import TERMINAL_COLUMNS, show_profile
    from lagchand_edge.profile.report import goals

    names = ("pytorch-eager-fp32", "tflite-fp32", "tflite-int8", "executorch-fp32", "executorch-int8", "mediapipe:hand_landmark_full")
    session = {"results": [], "settings": {"threads": 2}, "machine": {"cpu": "cpu"}, "label": "host proxy"}
    for name in names:
        row = _row(name, name.split("-")[0], name.rsplit("-")[-1], 10.0, 6e8)
        row["record"] |= {"runtime": "litert", "load_ms": 20.0, "latency_ms": {"p50": 10.0, "p90": 11.0, "p99": 12.0, "trimmed_mean": 10.1}}
        session["results"].append(row | {"label": "host proxy"})
    session["goals"] = goals(session)
    reason = "CoreML latency needs a Mac (MLModel.predict); coreml-sim is a reference interpreter, not a speed proxy"
    session["results"] += [{"artifact": f"coreml-{p}", "target": "coreml", "precision": p, "label": "host proxy", "status": "SKIPPED",
                            "reason": reason} for p in ("fp32", "int8")]
    show_profile(session, Path("out"), False)
    printed = capsys.readouterr().out
    assert all(name in printed for name in names + ("coreml-fp32", "coreml-int8")) and "…" not in printed
    assert "p90 ms" in printed and "trimmed mean" not in printed and len(TERMINAL_COLUMNS) < 16
    # a skipped row's reason is a note under the table, once for the rows that share it, not a column of one word a line
    assert printed.count("SKIPPED (note 1)") == 2 and printed.count("note 1: " + reason) == 1
