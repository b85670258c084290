"""Per-target extras (#23): a command that needs a target whose packages are not installed says
which `pip install 'lagchand-edge[...]'` brings them, in one line, before any work; runs that can
go on without that target (drift, profile, quickstart) leave it out and say so."""

import json
import subprocess
import sys

from PIL import Image

from converters import convertible
from tests.test_cli import assert_user_error

REPO_ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def run_without(package: str, *args):
    """The command line with `package` unimportable, as in an install without its extra."""
    code = (f"import sys; sys.modules[{package!r}] = None; sys.argv = ['lagchand-edge', *{list(args)!r}]; "
            "from lagchand_edge.cli import main; main()")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)


def test_convert_names_the_missing_extra_before_any_work(tmp_path):
    result = run_without("ai_edge_quantizer", "convert", "--target", "tflite", "--out", str(tmp_path / "out"))
    assert_user_error(result, "cannot convert for tflite: the tflite target needs ai_edge_quantizer")
    assert "pip install 'lagchand-edge[tflite]'" in result.stderr and not (tmp_path / "out").exists()
    assert_user_error(run_without("coremltools", "convert", "--target", "all", "--out", str(tmp_path / "out")), "[coreml]")
    assert_user_error(run_without("executorch", "qat", "--target", "executorch", "--data", str(tmp_path)), "[executorch]")
    assert_user_error(run_without("executorch", "qat", "--target", "tflite", "--data", str(tmp_path)), "[executorch]")  # its student


def test_running_an_artifact_without_its_runtime_is_said(fp32_artifacts, tmp_path):
    artifact = str(fp32_artifacts["executorch"].path)
    Image.new("RGB", (64, 48)).save(tmp_path / "photo.png")
    predict = run_without("executorch", "predict", str(tmp_path / "photo.png"), "--artifact", artifact, "--out", str(tmp_path / "p"))
    assert_user_error(predict, "cannot run executorch here: the executorch target needs executorch")
    profile = run_without("executorch", "profile", artifact, "--runs", "2", "--warmup", "1", "--out", str(tmp_path / "prof"), "--json")
    rows = {row["artifact"]: row for row in json.loads(profile.stdout)["results"]}
    assert rows["executorch-fp32"]["status"] == "SKIPPED" and "[executorch]" in rows["executorch-fp32"]["reason"], profile.stderr


def test_quickstart_converts_what_is_installed(monkeypatch):
    assert convertible() == ["executorch", "tflite", "coreml"]  # the test install has [all]
    monkeypatch.setitem(sys.modules, "coremltools", None)
    assert convertible() == ["executorch", "tflite"]
