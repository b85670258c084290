"""Records made on other devices (`profile --merge`): the four forms, tying each to the artifact it
ran by sha256, and speed-ups only between rows of one device."""

import json
import subprocess
import sys

import pytest

from apps.device_runner import device_runner
from lagchand_edge.errors import UserError
from lagchand_edge.profile.device_records import merged_rows, read_records, same_device_speedups, tie_to_artifacts
from lagchand_edge.profile.report import table_rows
from lagchand_edge.profile.session import model_file


def _benchmark_model_log(graph: str, mean_us: float) -> str:
    """What LiteRT's benchmark_model prints (its parameters, its load line, its timings)."""
    return (f"INFO: Num threads: [4]\nINFO: Graph: [{graph}]\nINFO: Loaded model {graph}\n"
            f"INFO: Inference timings in us: Init: 5685, First inference: 18535, Warmup (avg): 14463.5, Inference (avg): {mean_us}\n")


def test_benchmark_tool_logs_import(tmp_path):
    log = tmp_path / "pixel8_benchmark_model.txt"
    log.write_text(_benchmark_model_log("/data/local/tmp/tflite-int8/model.tflite", 14155.3))
    [record] = read_records(log)
    assert record["latency_ms"]["mean"] == pytest.approx(14.1553) and record["load_ms"] == pytest.approx(5.685)
    assert record["model_path"] == "/data/local/tmp/tflite-int8/model.tflite"
    runner = tmp_path / "executor_runner.txt"
    runner.write_text("I 00:00:00.9 executorch:executor_runner.cpp:120] Model file /data/local/tmp/et/model.pte is loaded.\n"
                      "I 00:00:01.2 executorch:executor_runner.cpp:210] Model executed successfully 20 time(s) in 250.0 ms.\n")
    [record] = read_records(runner)
    assert record["latency_ms"]["p50"] == pytest.approx(12.5) and record["model_path"] == "/data/local/tmp/et/model.pte"
    partial = tmp_path / "partial.json"
    partial.write_text('{"latency_ms": {"p50": 3.0}}')
    with pytest.raises(UserError, match="without the device runner's model, runtime and latency_ms.p50"):
        read_records(partial)
    junk = tmp_path / "junk.txt"
    junk.write_text("nothing here")
    with pytest.raises(UserError, match="neither a device-runner record"):
        read_records(junk)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="an empty folder"):
        merged_rows(empty)


def test_device_logs_are_tied_to_the_artifacts_they_name_and_compared_within_the_device(fp32_artifacts, int8_artifacts, tmp_path):
    fp32, int8, et = fp32_artifacts["tflite"].path, int8_artifacts["tflite"].path, fp32_artifacts["executorch"].path
    artifacts = [(path, *model_file(path)) for path in (fp32, int8, et)]
    phone = tmp_path / "pixel8"  # one device's logs in a folder named after it
    phone.mkdir()
    (phone / "fp32.log").write_text(_benchmark_model_log(f"/data/local/tmp/{fp32.name}/model.tflite", 20000))
    (phone / "int8.log").write_text(_benchmark_model_log(f"/data/local/tmp/{int8.name}/model.tflite", 8000))
    (phone / "pushed_bare.log").write_text(_benchmark_model_log("/data/local/tmp/model.tflite", 9000))  # which artifact? not certain
    (phone / "et.log").write_text(f"Model file /data/local/tmp/{et.name}/model.pte is loaded.\n"
                                  "Model executed successfully 10 time(s) in 150.0 ms.\n")
    board = tmp_path / "rpi5.json"  # the device runner's record carries the sha256 of what it ran
    done = subprocess.run([sys.executable, device_runner.__file__, str(int8 / "model.tflite"), "--runs", "3", "--warmup", "0", "--label", "rpi5"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    board.write_text(done.stdout)
    stranger = tmp_path / "other.json"
    stranger.write_text(json.dumps(json.loads(done.stdout) | {"sha256": "0" * 64, "label": "rpi5"}))

    rows = merged_rows(phone) + merged_rows(board) + merged_rows(stranger)
    tie_to_artifacts(rows, artifacts)
    same_device_speedups(rows)
    by_name = {r["artifact"]: r for r in rows}
    assert sorted(by_name) == sorted([f"{fp32.name}@pixel8", f"{int8.name}@pixel8", "pushed_bare@pixel8", f"{et.name}@pixel8",
                                      f"{int8.name}@rpi5", "model.tflite@rpi5"])
    phone_int8, phone_fp32 = by_name[f"{int8.name}@pixel8"], by_name[f"{fp32.name}@pixel8"]
    assert (phone_int8["precision"], phone_int8["target"], phone_int8["sha256"]) == ("int8", "tflite", artifacts[1][2]["sha256"])
    assert phone_int8["speedup_vs_device_fp32"] == {"baseline": phone_fp32["artifact"], "ratio": pytest.approx(2.5)}
    assert "speedup_vs_device_fp32" not in by_name[f"{et.name}@pixel8"]  # fp32 itself: its own baseline
    assert by_name["pushed_bare@pixel8"]["tied_to"] is None and by_name["pushed_bare@pixel8"]["precision"] == "see artifact"
    board_int8 = by_name[f"{int8.name}@rpi5"]
    assert board_int8["tied_to"] == str(int8) and "speedup_vs_device_fp32" not in board_int8  # rpi5 ran no fp32: no ratio with pixel8's
    assert by_name["model.tflite@rpi5"]["tie_note"] == "no artifact profiled here has its sha256"
    table = {row[0]: row for row in table_rows({"results": rows})[1:]}
    assert table[phone_int8["artifact"]][10] == "2.50x vs fp32" and table[board_int8["artifact"]][10] == "-"
    assert table["model.tflite@rpi5"][-1] == "OK: no artifact profiled here has its sha256"


def test_xcode_performance_report_csv_is_tied_by_the_local_package(fp32_artifacts, tmp_path):
    package = fp32_artifacts["coreml"].path / "model.mlpackage"
    report = tmp_path / "iphone.csv"
    report.write_text(f"\ufeffmodel,device,compute_units,prediction_ms,load_ms\n{package},iPhone 15 Pro (iOS 18.1),all,2.41,35.5\n"
                      f"{package},iPhone 15 Pro (iOS 18.1) CPU,cpuOnly,9.6,\n", encoding="utf-8")  # with a spreadsheet's byte-order mark
    rows = merged_rows(report)
    tie_to_artifacts(rows, [])  # the file it names is here: its own manifest ties it, profiled or not
    first, second = rows
    assert first["label"] == "iPhone 15 Pro (iOS 18.1)" and first["record"]["runtime"] == "coreml (Xcode performance report, all)"
    assert first["record"]["latency_ms"]["p50"] == 2.41 and first["record"]["load_ms"] == 35.5 and second["record"]["load_ms"] is None
    assert first["tied_to"] == str(package.parent) and (first["target"], first["precision"]) == ("coreml", "fp32")
    bad = tmp_path / "bad.csv"
    bad.write_text("model,device,prediction_ms\nmodel.mlpackage,iPhone,fast\n")
    with pytest.raises(UserError, match=r"bad.csv:2: prediction_ms and load_ms must be numbers"):
        merged_rows(bad)
    bad.write_text("model,device,prediction_ms,load_ms\n\nmodel.mlpackage,iPhone,2.5,-3\n")  # the error names the file's line
    with pytest.raises(UserError, match=r"bad.csv:3: .*no negative load_ms"):
        merged_rows(bad)
    bad.write_text("model,device,prediction_ms\n")
    with pytest.raises(UserError, match="no rows"):
        merged_rows(bad)
