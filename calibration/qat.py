"""Quantization-aware training (PT2E): fine-tune a target's int8 graph under its own fake quantization.

The student is the deployed graph exactly as the target quantizes it (its `quantizable_graph`),
with batch norms folded into their convolutions first (fine-tuning from a converged model keeps
their statistics frozen, and the int8 convolution is then the one trained), prepared by
`prepare_qat_pt2e` with the target's quantizer over the int8 plan (all-W8A8 by default). It learns
by distillation from the FP32 checkpoint it started from: L1 of vertices and joints (mm) and of
the camera. No labels are needed, so any InterHand2.6M-format root or cache serves, and the
student is pulled towards the function the drift gate compares it with. Fake-quant observers are
frozen after `freeze_observers` of the steps: scales stop moving and the weights settle on them.

A QAT checkpoint is the prepared graph's state (weights and fake-quant scales) in safetensors
beside a JSON sidecar that names the target, the plan and the source checkpoint (its sha256 is
checked on load); `load_qat` rebuilds the graph from the source and loads that state.
"""

from __future__ import annotations

import json
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from calibration.mixed_precision import check_module_names
from calibration.plans import Int8Plan
from converters import TARGETS, check_convertible, get_target
from converters.recipe import ConversionError
from lagchand_edge.checkpoint import bundled_checkpoint, load_checkpoint, sidecar_path
from lagchand_edge.data.cache import open_dataset
from lagchand_edge.data.interhand import collate
from lagchand_edge.data.transforms import to_model_input
from lagchand_edge.errors import UserError
from lagchand_edge.io import atomic_write_bytes, check_writable, file_sha256
from lagchand_edge.model import DeployModel, LAGCHand
from lagchand_edge.train.loop import load_optimizer, optimizer_path, save_optimizer
from lagchand_edge.train.targets import lr_at

FORMAT = "lagchand-edge-qat/1"
#: the camera's scale is ~2 and its offsets ~0.1 (normalised): weighted to count like millimetres
CAMERA_WEIGHT = 100.0


def qat_targets() -> list[str]:
    """Targets whose converter offers a QAT quantizer."""
    return [name for name in TARGETS if get_target(name).QAT_UNAVAILABLE is None]


def check_target(target: str) -> None:
    if target not in qat_targets():
        why = f" ({get_target(target).QAT_UNAVAILABLE})" if target in TARGETS else ""
        raise UserError(f"QAT is available for --target {' or '.join(qat_targets())}, not {target!r}{why}")
    check_convertible([target])


@dataclass
class QATOptions:
    target: str
    data: Path
    out: Path
    checkpoint: Path | None = None  # the FP32 source; default the bundled reference
    split: str = "train"
    epochs: int = 1
    batch_size: int = 8
    lr: float = 2e-5
    freeze_observers: float = 0.5  # fraction of the steps after which scales stop moving
    plan: Int8Plan = field(default_factory=Int8Plan)  # all-W8A8
    seed: int = 0
    limit: int | None = None
    resume: bool = False
    mano_dir: Path | None = None


def fold_batch_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Fold every (Conv2d, BatchNorm2d) pair of a `Sequential` into the convolution, in place."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in model.modules():
        if not isinstance(module, torch.nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, bn = module[i], module[i + 1]
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                module[i], module[i + 1] = fuse_conv_bn_eval(conv.eval(), bn.eval()), torch.nn.Identity()
    return model


def student_graph(model: LAGCHand, target: str, plan: Int8Plan) -> torch.fx.GraphModule:
    """The target's quantizable graph of `model`, prepared for QAT by `plan`. Its batch is
    dynamic, so the graph trained on batches is the one converted at batch 1: fake quantizers
    are named by graph position, and a graph traced at another batch numbers them differently."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    check_target(target)
    module = get_target(target)
    deploy = fold_batch_norms(DeployModel(model, int8_embeddings=True).eval())
    try:
        check_module_names(deploy, plan)
    except ConversionError as exc:
        raise UserError(f"int8 plan: {exc}") from None
    example = torch.zeros(2, 3, model.cfg.image_size, model.cfg.image_size)
    graph = module.quantizable_graph(deploy, example, dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    return prepare_qat_pt2e(graph, module.qat_quantizer(plan))


def load_state(student: torch.fx.GraphModule, path: Path, image_size: int) -> None:
    """Load a saved QAT state into a freshly prepared graph. A dummy pass first gives the
    per-channel observers their buffers' shapes (they take them from the first weights seen);
    every value is then overwritten by the file's."""
    with torch.no_grad():
        student(torch.zeros(1, 3, image_size, image_size))
    state = OrderedDict(load_file(str(path)))
    # the modules' versions, which safetensors does not keep: without them torchao's observers take the
    # state for a version-1 one and reset its eps (the smallest scale) to float32's machine epsilon
    state._metadata = student.state_dict()._metadata
    try:
        student.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"{path}: does not fit the graph of its source checkpoint ({' '.join(str(exc).split())[:300]})") from None


def distillation_loss(student: tuple, teacher: tuple) -> torch.Tensor:
    """L1 to the FP32 outputs: vertices and joints in mm, the camera weighted alike."""
    vertices, joints, camera = student
    return (1000 * ((vertices - teacher[0]).abs().mean() + (joints - teacher[1]).abs().mean())
            + CAMERA_WEIGHT * (camera - teacher[2]).abs().mean())


def save_qat(student: torch.fx.GraphModule, path: Path, info: dict) -> None:
    """The prepared graph's state and its sidecar, each written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # a fake quantizer shared by several ops is stored under each of its names (cloned: safetensors refuses aliases)
    tensors = {k: v.detach().clone().contiguous().cpu() for k, v in student.state_dict().items()}
    save_file(tensors, str(tmp), metadata={"format": FORMAT, "target": info["target"]})
    atomic_write_bytes(path, tmp.read_bytes())
    tmp.unlink()
    sidecar = {"format": FORMAT, **info, "sha256": file_sha256(path)}
    atomic_write_bytes(sidecar_path(path), json.dumps(sidecar, indent=2, default=str).encode())


def read_qat_info(path: Path) -> dict:
    """The sidecar of a QAT checkpoint, checked against the weights it describes."""
    path, side = Path(path), sidecar_path(path)
    if not path.is_file() or not side.is_file():
        raise UserError(f"{path}: no QAT checkpoint here (it needs its .json sidecar beside it)")
    try:
        info = json.loads(side.read_text())
        ok = info.get("format") == FORMAT and {"target", "plan", "source"} <= info.keys()
    except (ValueError, AttributeError):
        ok = False
    if not ok:
        raise UserError(f"{side}: not a QAT checkpoint sidecar (written by `lagchand-edge qat`)")
    if info.get("sha256") != file_sha256(path):
        raise UserError(f"{path}: its sha256 differs from the sidecar's: the file changed after training")
    return info


def _source_model(info: dict) -> LAGCHand:
    source = Path(info["source"]["checkpoint"])
    if not source.is_file():
        raise UserError(f"QAT source checkpoint {source} is missing (QAT trained from it)")
    if file_sha256(source) != info["source"]["checkpoint_sha256"]:
        raise UserError(f"QAT source checkpoint {source} changed since QAT trained from it")
    return load_checkpoint(source)


def load_qat(path: Path, info: dict | None = None) -> tuple[torch.fx.GraphModule, LAGCHand, dict]:
    """The trained QAT graph (observers frozen, eval mode), its FP32 source model and sidecar
    (`info`: the sidecar already read and checked by `read_qat_info`)."""
    from torchao.quantization.pt2e import disable_observer, move_exported_model_to_eval

    info = info or read_qat_info(path)
    model = _source_model(info)
    student = student_graph(model, info["target"], Int8Plan.from_dict(info["plan"]))
    load_state(student, path, model.cfg.image_size)
    student.apply(disable_observer)
    return move_exported_model_to_eval(student), model, info


def _finished_part(opts: QATOptions, info: dict) -> dict | None:
    """The sidecar of the run `--resume` continues, checked to be the same run with epochs left."""
    if not (opts.resume and opts.out.is_file()):
        return None
    done = read_qat_info(opts.out)
    if (done["target"], done["plan"], done["source"]) != (info["target"], info["plan"], info["source"]):
        raise UserError(f"{opts.out}: was trained for another target, plan or source checkpoint; --resume continues the same run")
    if done["epoch"] >= opts.epochs:
        raise UserError(f"{opts.out}: already trained {done['epoch']} epochs; ask for more with --epochs")
    return done


def train_qat(opts: QATOptions, on_step: Callable[[int, int, dict], None] | None = None) -> dict:
    """Fine-tune under fake quantization; writes a checkpoint after every epoch and returns its sidecar."""
    from torchao.quantization.pt2e import disable_observer, move_exported_model_to_train

    if not 0.0 <= opts.freeze_observers <= 1.0:
        raise UserError(f"--freeze-observers is a fraction of training in [0, 1], not {opts.freeze_observers}")
    check_target(opts.target)
    opts.out = Path(opts.out)
    check_writable(opts.out)
    torch.manual_seed(opts.seed)
    source = Path(opts.checkpoint) if opts.checkpoint else bundled_checkpoint()
    model = load_checkpoint(source)
    dataset = open_dataset(opts.data, opts.split, opts.mano_dir, opts.limit)
    if len(dataset) < opts.batch_size:
        raise UserError(f"{opts.data}: {len(dataset)} samples are fewer than one batch ({opts.batch_size})")
    info = {"target": opts.target, "plan": opts.plan.to_dict(),
            "source": {"checkpoint": str(source.resolve()), "checkpoint_sha256": file_sha256(source), "config": model.cfg.name},
            "scheme": get_target(opts.target).qat_scheme(),
            "data": str(opts.data), "split": opts.split, "samples": len(dataset), "batch_size": opts.batch_size,
            "freeze_observers": opts.freeze_observers, "epochs_planned": opts.epochs, "lr": opts.lr, "command": " ".join(sys.argv)}
    done = _finished_part(opts, info)
    student = student_graph(model, opts.target, opts.plan)
    start_epoch, history = 0, []
    if done:
        load_state(student, opts.out, model.cfg.image_size)
        start_epoch, history = int(done["epoch"]), done["history"]
    teacher = DeployModel(model, deployed_form=False).eval()
    student = move_exported_model_to_train(student)
    optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=opts.lr)
    if start_epoch and optimizer_path(opts.out).is_file():
        load_optimizer(optimizer, opts.out)
    steps_per_epoch = len(dataset) // opts.batch_size
    total = steps_per_epoch * opts.epochs
    freeze_at = int(opts.freeze_observers * total)
    frozen = False
    for epoch in range(start_epoch, opts.epochs):
        loader = torch.utils.data.DataLoader(dataset, opts.batch_size, shuffle=True, collate_fn=collate, drop_last=True,
                                             generator=torch.Generator().manual_seed(opts.seed + epoch))
        steps, sums, started = 0, 0.0, time.perf_counter()
        for batch in loader:
            if batch is None:
                continue
            done_steps = epoch * steps_per_epoch + steps
            if not frozen and done_steps >= freeze_at:
                student.apply(disable_observer)
                frozen = True
            for group in optimizer.param_groups:
                group["lr"] = lr_at(done_steps / total, opts.lr, "cosine", 0.0)
            images = to_model_input(batch["image"])
            with torch.no_grad():
                reference = teacher(images)
            loss = distillation_loss(student(images), reference)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            sums += float(loss.detach())
            if on_step:
                on_step(epoch, steps, {"loss": sums / steps})
        history.append({"epoch": epoch + 1, "steps": steps, "seconds": round(time.perf_counter() - started, 1),
                        "distillation_l1": round(sums / max(steps, 1), 6), "observers_frozen": frozen})
        info |= {"epoch": epoch + 1, "history": history}
        save_qat(student, opts.out, info)
        save_optimizer(optimizer, opts.out)
    return info
