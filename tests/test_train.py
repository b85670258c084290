import json
import os
import pickle
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from lagchand_edge.checkpoint import load_checkpoint, save_checkpoint
from lagchand_edge.errors import UserError
from lagchand_edge.model import create_model
from lagchand_edge.train.loop import TrainOptions, train


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
def test_a_few_steps_on_tiny_reduce_the_loss(synth_train_root, tmp_path, bf16):
    out = tmp_path / "tiny.safetensors"
    info = train(TrainOptions(data=synth_train_root, out=out, config="tiny", epochs=6, batch_size=8, lr=3e-3, edge_from=1.0, bf16=bf16))
    losses = [epoch["loss"] for epoch in info["history"]]
    assert losses[-1] < 0.8 * losses[0], losses
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["config"] == "tiny" and sidecar["epoch"] == 6 and len(sidecar["sha256"]) == 64
    assert load_checkpoint(out).cfg.name == "tiny"
    stored = load_file(str(out))  # the file itself: load_checkpoint would cast any dtype to fp32
    assert all(t.dtype == torch.float32 for t in stored.values() if t.is_floating_point())  # mixed precision keeps fp32 weights


def test_training_is_deterministic_resumable_and_loader_independent(synth_train_root, tmp_path):
    options = dict(data=synth_train_root, config="tiny", epochs=2, batch_size=8, lr=1e-3)
    full = tmp_path / "full.safetensors"
    train(TrainOptions(out=full, **options))
    part = tmp_path / "part.safetensors"

    def interrupt(epoch, step, losses):
        if epoch == 1:
            raise KeyboardInterrupt  # killed during the second epoch

    with pytest.raises(KeyboardInterrupt):
        train(TrainOptions(out=part, **options), interrupt)
    assert json.loads(part.with_suffix(".json").read_text())["epoch"] == 1
    train(TrainOptions(out=part, resume=True, **options))
    a, b = load_checkpoint(full).state_dict(), load_checkpoint(part).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)  # exactly: the README promises it
    loaded = tmp_path / "workers.safetensors"  # batches read by two loader processes: the same batches, the same weights
    train(TrainOptions(out=loaded, workers=2, **options))
    c = load_checkpoint(loaded).state_dict()
    assert all(torch.equal(a[key], c[key]) for key in a)


def test_torchrun_ddp_with_two_cpu_processes(synth_train_root, tmp_path):
    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}  # torchrun's rendezvous folders stay in the test's
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",  # a free port
         "-m", "lagchand_edge", "train", "--data", str(synth_train_root), "--out", str(out), "--config", "tiny",
         "--epochs", "1", "--batch-size", "4"],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["world_size"] == 2
    assert sidecar["history"][0]["steps"] == 2  # 16 samples / 2 ranks / batch 4


def test_bad_checkpoints_are_refused(tmp_path):
    model = create_model("tiny")
    good = tmp_path / "tiny.safetensors"
    save_checkpoint(model, good, {})
    with pytest.raises(UserError, match="for config 'tiny', not 'reference'"):
        load_checkpoint(good, config="reference")
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(UserError, match="cut.safetensors"):
        load_checkpoint(truncated)
    pickled = tmp_path / "model.pth"
    pickled.write_bytes(pickle.dumps({"weights": 1}))
    with pytest.raises(UserError, match=".safetensors checkpoints only"):
        load_checkpoint(pickled)
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "nothing.safetensors")
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(UserError, match="not a lagchand-edge checkpoint"):
        load_checkpoint(foreign)
