"""Outputs are written whole or not at all, and never replace what another run wrote."""

import pytest

from lagchand_edge.errors import UserError
from lagchand_edge.io import atomic_dir, report_files


def test_a_folder_written_meanwhile_by_another_run_is_kept(tmp_path):
    target = tmp_path / "tflite-int8"
    with pytest.raises(UserError, match="appeared while this ran"):
        with atomic_dir(target) as tmp:
            (tmp / "model.tflite").write_text("ours")
            target.mkdir()  # the other conversion finished first
            (target / "model.tflite").write_text("theirs")
    assert (target / "model.tflite").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["tflite-int8"]  # and no temporary folder is left
    with atomic_dir(target, force=True) as tmp:
        (tmp / "model.tflite").write_text("ours")
    assert (target / "model.tflite").read_text() == "ours"


def test_a_failed_report_leaves_no_empty_folder(tmp_path):
    with pytest.raises(RuntimeError):
        with report_files(tmp_path / "report", "profile.json"):
            raise RuntimeError("the run failed")
    assert not (tmp_path / "report").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError):
        with report_files(tmp_path / "kept", "profile.json"):
            raise RuntimeError("the run failed")
    assert (tmp_path / "kept").is_dir()  # a folder the user had is never removed
