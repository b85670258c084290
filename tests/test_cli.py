"""The command line as a user meets it: real subprocesses, real exit codes, no tracebacks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lagchand_edge


def run_cli(*args, check=False):
    result = subprocess.run([sys.executable, "-m", "lagchand_edge", *args], capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def assert_user_error(result, fragment):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # one line, as the README promises


def test_version_and_help():
    assert run_cli("--version", check=True).stdout.strip() == f"lagchand-edge {lagchand_edge.__version__}"
    for command in ([], ["data"], ["data", "synth"], ["data", "show"]):
        assert "Usage" in run_cli(*command, "--help", check=True).stdout


def test_every_option_says_what_it_does():
    """#22: help text for every option of every command, and no `<bool>` where a flag takes no value."""
    import typer.main

    from lagchand_edge.cli import app

    def commands(command, path=()):
        for name, sub in getattr(command, "commands", {}).items():
            yield from commands(sub, (*path, name))
        if not hasattr(command, "commands"):
            yield path, command

    found = list(commands(typer.main.get_command(app)))
    assert len(found) >= 15 and {("drift", "check"), ("drift", "merge")} <= {path for path, _ in found}
    silent = [f"{' '.join(path)} {param.name}" for path, command in found for param in command.params if not getattr(param, "help", None)]
    assert silent == []
    assert "<bool>" not in run_cli("drift", "check", "--help", check=True).stdout


def test_renamed_options_keep_their_old_spelling_hidden(tmp_path):
    """#22: one name per idea (--num counts, --precision names precisions, --expect-config checks);
    the old spellings still work for one release, hidden from --help."""
    assert "--limit" not in run_cli("train", "--help", check=True).stdout
    for command in (["train"], ["qat", "--target", "executorch"]):
        assert_user_error(run_cli(*command, "--data", str(tmp_path), "--out", str(tmp_path / "x.safetensors"), "--num", "2", "--limit", "3"),
                          "--limit is the old name of --num")
    convert_help = run_cli("convert", "--help", check=True).stdout
    assert "--calib-num" in convert_help and "--calib-samples" not in convert_help and "--expect-config" in convert_help
    assert_user_error(run_cli("convert", "--calib-num", "4", "--calib-samples", "8", "--out", str(tmp_path / "a")),
                      "--calib-samples is the old name of --calib-num")
    assert_user_error(run_cli("convert", "--expect-config", "tiny", "--config", "lite", "--out", str(tmp_path / "a")),
                      "--config is the old name of --expect-config")
    assert_user_error(run_cli("quickstart", "--precision", "fp32", "--precisions", "int8", "--out", str(tmp_path / "q")),
                      "--precisions is the old name of --precision")


def test_drift_merge_is_a_command_of_its_own():
    merge = run_cli("drift", "merge", "--help", check=True).stdout
    assert "Fold shard outputs" in merge and "--max-vertex-drift" in merge and "--per-layer" not in merge
    assert_user_error(run_cli("drift", "merge", "/nonexistent-shard", "--out", "/tmp/lagchand-no-such-merge"), "not a drift output folder")


def test_info_counts_the_training_model_and_the_deployed_one():
    report = json.loads(run_cli("info", "--config", "tiny", "--json", check=True).stdout)
    assert report["modules"][-1]["module"] == "total" and 0 < report["deployed_gmacs"] < report["gmacs"]
    assert "deployed artifacts:" in run_cli("info", "--config", "tiny", check=True).stdout


def test_synth_then_show_makes_a_picture(tmp_path, tiny_checkpoint):
    out = tmp_path / "s"
    summary = json.loads(run_cli("data", "synth", "--out", str(out), "--num", "4", "--json", check=True).stdout)
    assert summary["samples"] == 4 and summary["has_mesh"] and summary["hand_model"] == "procedural"
    run_cli("data", "show", str(out), "--index", "0", "--out", str(tmp_path / "s0.png"), check=True)
    picture = Image.open(tmp_path / "s0.png")
    assert picture.size == (512, 512)
    shown = run_cli("data", "show", str(out), "--index", "0", "--index", "3", "--checkpoint", str(tiny_checkpoint),
                    "--out", str(tmp_path / "grid.png"), check=True)
    assert "ground truth | prediction" in shown.stdout
    sheet = np.asarray(Image.open(tmp_path / "grid.png"))
    assert sheet.shape == (512 * 2 + 4, 512 * 2 + 4, 3)  # two samples, ground truth and prediction side by side
    assert np.array_equal(sheet[:512, :512], np.asarray(picture))  # the first panel is the plain ground-truth picture
    assert not np.array_equal(sheet[:512, :512], sheet[:512, 516:])  # the prediction panel draws other hands


def test_user_errors_are_one_line(tmp_path):
    out = tmp_path / "s"
    run_cli("data", "synth", "--out", str(out), "--num", "2", check=True)
    assert_user_error(run_cli("data", "synth", "--out", str(out), "--num", "2"), "already exists")
    assert_user_error(run_cli("data", "show", str(out), "--index", "9", "--out", str(tmp_path / "x.png")), "out of range")
    assert_user_error(run_cli("data", "summary", str(tmp_path / "missing")), "data folder not found")
    assert_user_error(run_cli("data", "synth", "--out", str(tmp_path / "t"), "--split", "dev"), "unknown split")
    assert_user_error(run_cli("data", "synth", "--bogus"), "(see 'lagchand-edge data synth --help')")
    assert_user_error(run_cli("data", "synth", "--out", str(tmp_path / "u"), "--size", "0"), "Invalid value for '--size'")
    assert_user_error(run_cli("convert", "--keep-float"), "Option '--keep-float' requires an argument")
    assert_user_error(run_cli("nosuch"), "No such command 'nosuch'")
    assert run_cli("data").returncode == 2 and "Usage: lagchand-edge data" in run_cli("data").stdout  # no command: the help
    for gate in ("nan", "-1", "inf"):
        assert_user_error(run_cli("drift", str(out), "--max-mpjpe-drift", gate), "a gate is a finite number")


def test_train_with_the_aligned_loss_and_the_edge_loss_from_the_start(synth_train_root, tmp_path):
    out = tmp_path / "aligned.safetensors"
    options = ["train", "--data", str(synth_train_root), "--config", "tiny", "--epochs", "1", "--batch-size", "8", "--edge-from", "0"]
    run_cli(*options, "--loss-weight", "aligned=100", "--out", str(out), check=True)
    epoch = json.loads(out.with_suffix(".json").read_text())["history"][0]
    assert epoch["aligned"] > 0 and epoch["edge"] > 0  # both terms ran in the only epoch
    assert_user_error(run_cli(*options, "--loss-weight", "algined=1", "--out", str(tmp_path / "x.safetensors")), "unknown loss 'algined'")
    kept = out.read_bytes()
    assert_user_error(run_cli(*options, "--out", str(out)), "already exists (use --force to replace it, or --resume")
    assert out.read_bytes() == kept  # like every other command, train replaces its output only with --force


def test_internal_errors_are_one_line_with_the_traceback_in_a_file(tmp_path):
    code = ("import sys\nfrom lagchand_edge import cli\n@cli.app.command('boom')\ndef boom():\n    raise RuntimeError('a bug deep inside')\n"
            "sys.argv = ['lagchand-edge', 'boom']\ncli.main()")
    env = os.environ | {"TMPDIR": str(tmp_path)}  # the traceback file goes to the temp folder: this test's, not the machine's
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    line = (result.stdout + result.stderr).strip()
    assert line.startswith("internal error: RuntimeError: a bug deep inside (full traceback: ") and "\n" not in line
    saved = Path(line.split("full traceback: ")[1].rstrip(")"))
    assert saved.parent == tmp_path and 'in boom\nRuntimeError: a bug deep inside' in saved.read_text()


def test_sigterm_leaves_no_half_written_output(tmp_path):
    import signal
    import time

    out = tmp_path / "s"
    process = subprocess.Popen([sys.executable, "-m", "lagchand_edge", "data", "synth", "--out", str(out), "--num", "2000"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".s.*.partial")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # some samples written
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) != 0
    assert list(tmp_path.iterdir()) == []  # neither the set nor its temporary folder


def test_evaluate_cli_scores_the_model_and_the_baseline(synth_root, synth_train_root, tiny_checkpoint):
    report = json.loads(run_cli("evaluate", "--data", str(synth_root), "--checkpoint", str(tiny_checkpoint), "--baseline-from",
                                str(synth_train_root), "--json", check=True).stdout)
    model, baseline = report["model"], report["mean_pose_baseline"]
    assert model["samples"] == baseline["samples"] == 8 and report["skipped"] == {}
    assert report["mpjpe_ratio"] == model["mpjpe"] / baseline["mpjpe"]
    assert report["rotation_err_deg_median"] == model["rotation_error_deg_median"] and 0 <= report["joint_2d_err_px_median"]
    table = run_cli("evaluate", "--data", str(synth_root), "--checkpoint", str(tiny_checkpoint), "--num", "3", check=True).stdout
    assert "3 samples" in table and "MPJPE mm" in table


def test_an_image_that_cannot_be_decoded_is_a_counted_skip_everywhere(synth_root, tiny_checkpoint, fp32_artifacts, tmp_path):
    """#21: a zero-byte JPEG is said as skipped by evaluate, drift and `data summary --check-images`, never counted as a sample."""
    import shutil

    root = tmp_path / "set"
    shutil.copytree(synth_root, root)
    next((root / "images").rglob("*.jpg")).write_bytes(b"")
    report = json.loads(run_cli("evaluate", "--data", str(root), "--checkpoint", str(tiny_checkpoint), "--json", check=True).stdout)
    assert report["model"]["samples"] == 7 and report["skipped"] == {"unreadable at load time": 1}
    drift = run_cli("drift", str(fp32_artifacts["tflite"].path), "--data", str(root), "--checkpoint", str(tiny_checkpoint),
                    "--out", str(tmp_path / "d"))
    assert drift.returncode == 0 and "data: 7 samples, skipped 1 (1 unreadable at load time)" in " ".join(drift.stdout.split())
    run_cli("data", "cache", str(root), "--split", "test", "--out", str(tmp_path / "cache"), "--workers", "1", check=True)
    card = json.loads((tmp_path / "cache" / "cache.json").read_text())
    assert card["samples"] == 7 and card["skipped"] == {"unreadable at load time": 1}  # the same words as evaluate and drift
    quick = json.loads(run_cli("data", "summary", str(root), "--json", check=True).stdout)
    assert quick["samples"] == 8 and quick["images"].startswith("not read")  # annotations only: says so
    checked = json.loads(run_cli("data", "summary", str(root), "--check-images", "--json", check=True).stdout)
    assert checked["samples"] == 7 and checked["skipped"] == {"unreadable image": 1}


def test_convert_cli_parses_the_int8_plan_and_reports_json(tiny_checkpoint, synth_root, tmp_path):
    done = run_cli("convert", "--target", "tflite", "--precision", "int8", "--checkpoint", str(tiny_checkpoint), "--calib-data", str(synth_root),
                   "--calib-num", "4", "--static", "model.encoder", "--float-activations", "none", "--keep-float", "none",
                   "--out", str(tmp_path), "--json", check=True)
    (result,) = json.loads(done.stdout)
    assert result["target"] == "tflite" and result["precision"] == "int8" and result["parity_max_vertex_mm"] < 5
    manifest = json.loads((tmp_path / "tflite-int8" / "manifest.json").read_text())
    assert manifest["recipe"]["int8_plan"] == result["int8_plan"] == {"static_w8a8": ["model.encoder"], "float_activations": [], "keep_float": []}
    assert manifest["calibration"]["count"] == 4
    again = run_cli("convert", "--target", "tflite", "--precision", "int8", "--checkpoint", str(tiny_checkpoint), "--calib-data", str(synth_root),
                    "--out", str(tmp_path))
    assert_user_error(again, "already exists")


def test_the_artifacts_table_shows_each_int8_plan(tmp_path):
    """`--static model` alone keeps the default plan's float-activation modules: the console says which plan ran."""
    from rich.console import Console

    from calibration.plans import DEFAULT_INT8_PLAN
    from lagchand_edge.cli.convert import artifacts_table
    from lagchand_edge.convert import ConvertResult

    results = [ConvertResult("executorch", "int8", tmp_path / "executorch-int8", 10**6, 0.5, "4 images", DEFAULT_INT8_PLAN.to_dict()),
               ConvertResult("tflite", "fp32", tmp_path / "tflite-fp32", 10**6, 0.0, "4 images")]
    console = Console(record=True, width=200)
    console.print(artifacts_table(results, "artifacts"))
    text = console.export_text()
    assert "int8 plan of executorch-int8: W8A8 model.encoder, model.compact, model.camera_head; float activations model.graph" in text
    assert "tflite-fp32:" not in text


@pytest.mark.slow
def test_quickstart_runs_the_main_job_end_to_end(tiny_checkpoint, tmp_path):
    out = tmp_path / "qs"
    done = run_cli("quickstart", "--checkpoint", str(tiny_checkpoint), "--num", "4", "--precision", "fp32", "--out", str(out), check=True)
    assert f"done: {out}" in " ".join(done.stdout.split())
    made = sorted(p.name for p in (out / "artifacts").iterdir())
    assert made == ["coreml-fp32", "executorch-fp32", "tflite-fp32"]
    drift = json.loads((out / "report" / "report.json").read_text())
    assert drift["passed"] is True and drift["data"]["samples"] == 4
    assert {row["artifact"]: row["verdict"] for row in drift["artifacts"]} == dict.fromkeys(made, "PASS")
    profile = json.loads((out / "report" / "profile.json").read_text())
    profiled = {row["artifact"]: row["status"] for row in profile["results"] if not row.get("anchor")}  # MediaPipe's too, when cached
    assert profiled == {"pytorch-eager-fp32": "OK", "coreml-fp32": "SKIPPED", "executorch-fp32": "OK", "tflite-fp32": "OK"}  # CoreML: Apple only
    assert (out / "report" / "report.html").is_file() and (out / "report" / "profile.html").is_file()
    assert_user_error(run_cli("quickstart", "--checkpoint", str(tiny_checkpoint), "--num", "4", "--out", str(out)), "already exists")


def test_library_log_lines_stay_off_the_console_unless_verbose(fp32_artifacts, tmp_path):
    """LiteRT's C++ logger writes "Created TensorFlow Lite XNNPACK delegate" to descriptor 2 itself."""
    artifact = str(fp32_artifacts["tflite"].path)
    options = ["drift", artifact, "--num", "2", "--allow-mismatch"]  # the bundled checkpoint as reference: exit 1, a FAIL row
    quiet = run_cli(*options, "--out", str(tmp_path / "q"))
    assert quiet.returncode == 1 and "XNNPACK delegate" not in quiet.stderr and "Warning" not in quiet.stderr, quiet.stderr
    loud = run_cli("--verbose", *options, "--out", str(tmp_path / "v"))
    assert loud.returncode == 1 and "Created TensorFlow Lite XNNPACK delegate" in loud.stderr, loud.stderr
