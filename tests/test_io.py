"""Outputs are written whole or not at all, and never replace what another run wrote."""

import pytest

from lagchand_edge.errors import UserError
from lagchand_edge.io import atomic_dir, check_writable, refuse_existing, report_files


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


def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path, synth_train_root):
    from lagchand_edge.train.loop import TrainOptions, train

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="a-file is a file, not a folder"):
        check_writable(blocker / "deeper" / "report")
    with pytest.raises(UserError, match="a-file is a file, not a folder"):
        refuse_existing(blocker / "report.json", force=False)
    check_writable(tmp_path / "new" / "deeper" / "out")  # folders that do not exist yet are fine
    assert not (tmp_path / "new").exists()  # and the check creates nothing
    with pytest.raises(UserError, match="is a file, not a folder"):  # before the first epoch
        train(TrainOptions(data=synth_train_root, out=blocker / "model.safetensors", config="tiny", epochs=1, batch_size=4))


def test_a_second_run_writing_the_same_output_at_once_is_refused_even_with_force(tmp_path):
    target = tmp_path / "tflite-int8"
    with atomic_dir(target) as tmp:
        (tmp / "model.tflite").write_text("first")
        with pytest.raises(UserError, match="being written by another run"):
            with atomic_dir(target, force=True):
                pass
    assert (target / "model.tflite").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tflite-int8"]  # no lock or partial left
    with report_files(tmp_path / "reports", "profile.json") as tmp:
        (tmp / "profile.json").write_text("{}")
        with pytest.raises(UserError, match="being written by another run"):
            with report_files(tmp_path / "reports", "profile.json", force=True):
                pass
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["profile.json"]


def test_the_same_weights_saved_by_different_processes_are_the_same_bytes(tmp_path):
    """safetensors orders its metadata by a per-process random hash; each save here runs in its
    own interpreter, so an unsorted header would give differing files (24 orders of 4 keys)."""
    import hashlib
    import subprocess
    import sys

    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    save = ("import sys, torch; from lagchand_edge.io import write_safetensors; "
            "write_safetensors(sys.argv[1], {'w': torch.arange(6.0).reshape(2, 3), 'step': torch.tensor([7])}, "
            "{'format': 'f', 'config': 'c', 'hand_model': 'h', 'num_vertices': '778'})")
    paths = [tmp_path / f"run{i}.safetensors" for i in range(4)]
    for path in paths:
        subprocess.run([sys.executable, "-c", save, str(path)], check=True)
    assert len({hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}) == 1
    tensors = load_file(str(paths[0]))
    assert torch.equal(tensors["w"], torch.arange(6.0).reshape(2, 3)) and tensors["step"].tolist() == [7]
    with safe_open(str(paths[0]), framework="pt") as handle:
        assert handle.metadata() == {"config": "c", "format": "f", "hand_model": "h", "num_vertices": "778"}
    assert int.from_bytes(paths[0].read_bytes()[:8], "little") % 8 == 0
