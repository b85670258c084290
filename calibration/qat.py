"""Quantization-aware training (PT2E): fine-tune a target's int8 graph under its own fake quantization.

The student is the deployed graph exactly as the target quantizes it (its `quantizable_graph` at
batch 1; a batch runs one image at a time), with batch norms folded into their convolutions
first (fine-tuning from a converged model keeps their statistics frozen, and the int8
convolution is then the one trained), prepared by
`prepare_qat_pt2e` with the target's quantizer over the int8 plan (all-W8A8 by default). It learns
by distillation from the FP32 checkpoint it started from: L1 (mm) of vertices and joints in the
frame the drift gate scores them in, of the raw outputs, and of the camera. No labels are
needed, so any InterHand2.6M-format root or cache serves, and the student is pulled towards the
function the drift gate compares it with. Training starts where the
target's PTQ stands: the activations' int8 ranges are those its PTQ calibration picks (XNNPACK's
histogram observer) on `calib_num` images of the data. As the weights train, those grids go stale
(they were chosen for the source weights), so by default they are calibrated again on the
student's own weights at each epoch's end (`recalibrations` per epoch); the weights' per-channel
observers follow the weights until `freeze_observers` of the steps, then the weights settle on
their scales.

LiteRT has no PT2E path that carries trained scales on this stack, so QAT for it trains
ExecuTorch's graph, whose XNNPACK scheme is AI Edge Quantizer's grid, and its converter takes the
student's weights as they round (`qat_adapted_model`) and calibrates activations itself. The two
targets thus train one student, and a checkpoint of either converts to both (`converts_to`).

A QAT checkpoint is the prepared graph's state (weights and fake-quant scales) in safetensors
beside a JSON sidecar that names the target, the plan and the source checkpoint (its sha256 is
checked on load); `load_qat` rebuilds the graph from the source and loads that state.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import torch
from safetensors.torch import load_file

from calibration.mixed_precision import check_module_names
from calibration.plans import Int8Plan
from calibration.select import select_calibration
from converters import TARGETS, check_convertible, get_target
from converters.recipe import ConversionError
from lagchand_edge.checkpoint import bundled_checkpoint, load_checkpoint, sidecar_path
from lagchand_edge.data.cache import open_dataset
from lagchand_edge.data.interhand import collate
from lagchand_edge.data.transforms import to_model_input
from lagchand_edge.errors import UserError
from lagchand_edge.hand.joints import MIDDLE_MCP, WRIST
from lagchand_edge.io import atomic_write_bytes, check_writable, file_sha256, write_safetensors
from lagchand_edge.model import DeployModel, LAGCHand
from lagchand_edge.train.loop import load_optimizer, optimizer_path, save_optimizer
from lagchand_edge.train.targets import lr_at

FORMAT = "lagchand-edge-qat/3"  # /1 trained a batch-generic graph; /2 widened the graph per child (no longer loads)
#: the camera's scale is ~2 and its offsets ~0.1 (normalised): weighted to count like millimetres
CAMERA_WEIGHT = 100.0
#: the unaligned outputs' share of the distillation loss, beside the gate's aligned ones
RAW_WEIGHT = 0.5


def qat_targets() -> list[str]:
    """Targets whose converter offers a QAT quantizer."""
    return [name for name in TARGETS if get_target(name).QAT_UNAVAILABLE is None]


def student_target(target: str) -> ModuleType:
    """The converter whose int8 graph and quantizers QAT for `target` trains (`QAT_STUDENT`: LiteRT's is ExecuTorch's)."""
    return get_target(get_target(target).QAT_STUDENT or target)


def converts_to(target: str) -> list[str]:
    """The targets a QAT checkpoint trained for `target` converts to: every QAT target whose student
    is the same graph under the same quantizer (ExecuTorch's run serves LiteRT too, and the reverse)."""
    student = student_target(target).NAME
    return [name for name in qat_targets() if student_target(name).NAME == student]


def check_target(target: str) -> None:
    if target not in qat_targets():
        why = f" ({get_target(target).QAT_UNAVAILABLE})" if target in TARGETS else ""
        raise UserError(f"QAT is available for --target {' or '.join(qat_targets())}, not {target!r}{why}")
    check_convertible([target, student_target(target).NAME])


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
    freeze_observers: float = 0.5  # fraction of the steps after which the weights' scales stop moving
    calib_num: int = 32  # images whose PTQ calibration gives the activations' ranges (as `convert --calib-num`)
    recalibrations: int = 1  # per epoch: times the activations' ranges are calibrated again on the trained weights (0: PTQ's throughout)
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


def quantizable(model: LAGCHand, target: str, plan: Int8Plan) -> torch.fx.GraphModule:
    """The target's quantizable graph of `model`'s deployed form (batch norms folded), traced at
    batch 1 as `convert` traces it, so that QAT trains the graph that is deployed: the deployed
    form is written for batch 1, and a batch-generic trace carried 93 more ops (33 more
    quantize/dequantize pairs, repeats, transposes) into the QAT artifact. The student
    therefore runs one image at a time (`per_image`)."""
    check_target(target)
    deploy = fold_batch_norms(DeployModel(model, int8_embeddings=True).eval())
    try:
        check_module_names(deploy, plan)
    except ConversionError as exc:
        raise UserError(f"int8 plan: {exc}") from None
    return student_target(target).quantizable_graph(deploy, torch.zeros(1, 3, model.cfg.image_size, model.cfg.image_size))


def per_image(graph: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """A batch-1 graph's outputs for a batch of `images`, one image at a time, stacked."""
    return tuple(torch.cat(parts) for parts in zip(*(graph(image[None]) for image in images), strict=True))


def student_graph(graph: torch.fx.GraphModule, target: str, plan: Int8Plan) -> torch.fx.GraphModule:
    """A copy of a `quantizable` graph, prepared for QAT by `plan` (the graph itself stays as it
    is, for `seed_activation_ranges`)."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    return prepare_qat_pt2e(copy.deepcopy(graph), student_target(target).qat_quantizer(plan))


def _activation_quantizers(graph: torch.fx.GraphModule) -> dict[str, torch.nn.Module]:
    """A prepared graph's activation observers (or fake quantizers) by the node each one watches."""
    found: dict[str, torch.nn.Module] = {}
    seen: Counter[str] = Counter()  # a node watched more than once (by each of its consumers' quantizers)
    for node in graph.graph.nodes:
        if node.op == "call_module" and "activation_post_process" in node.target and node.args[0].op != "get_attr":
            watched = node.args[0].name
            found[f"{watched}#{seen[watched]}"] = getattr(graph, node.target)
            seen[watched] += 1
    return found


def _set_range(fake_quant: torch.nn.Module, scale: torch.Tensor, zero_point: torch.Tensor) -> None:
    """Give a fake quantizer an affine int8 grid (scale, zero point) through its observer's range,
    so that training and `convert_pt2e` (which asks the observer) use the same grid; it stops observing."""
    observer = fake_quant.activation_post_process
    observer.min_val.copy_(((observer.quant_min - zero_point) * scale).reshape(observer.min_val.shape))
    observer.max_val.copy_(((observer.quant_max - zero_point) * scale).reshape(observer.max_val.shape))
    scale, zero_point = observer.calculate_qparams()
    fake_quant.scale.copy_(scale.reshape(fake_quant.scale.shape))
    fake_quant.zero_point.copy_(zero_point.reshape(fake_quant.zero_point.shape).to(fake_quant.zero_point.dtype))
    fake_quant.disable_observer()


def seed_activation_ranges(student: torch.fx.GraphModule, graph: torch.fx.GraphModule, target: str, plan: Int8Plan,
                           images: torch.Tensor) -> int:
    """Start QAT where the target's PTQ stands: calibrate its PTQ quantizer on `images` (one at a
    time, as `convert` does) over `graph`, the `quantizable` graph the student was prepared from
    (used up by this), and give every activation fake quantizer of the student the grid its PTQ
    observer chose; those stop observing. QAT's own moving-average min-max, started from a few
    batches, clips the rare large activations that a PTQ histogram keeps (on the reference
    model 40 mm of vertex error from FP32 against PTQ's 11).
    Returns how many were seeded."""
    from torchao.quantization.pt2e import FixedQParamsObserver
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    calibrated = prepare_pt2e(graph, student_target(target).ptq_quantizer(plan))
    with torch.no_grad():
        for image in images:
            calibrated(image[None])
    ptq, qat = _activation_quantizers(calibrated), _activation_quantizers(student)
    if ptq.keys() != qat.keys():
        raise ConversionError(f"the {target} PTQ and QAT quantizers annotate different activations "
                              f"({len(ptq.keys() ^ qat.keys())} differ, e.g. {sorted(ptq.keys() ^ qat.keys())[:3]})")
    with torch.no_grad():
        for key, observer in ptq.items():
            if isinstance(observer, FixedQParamsObserver):  # a grid the kernel fixes (int8 sigmoid): already the student's
                qat[key].disable_observer()
                continue
            _set_range(qat[key], *observer.calculate_qparams())
    return len(ptq)


def recalibrate_activation_ranges(student: torch.fx.GraphModule, model: LAGCHand, target: str, plan: Int8Plan,
                                  images: torch.Tensor) -> int:
    """Give the student's activation fake quantizers the grids the target's PTQ calibration picks on
    `images` for the student's weights as they now stand (rounded as trained, `qat_adapted_model`
    of `model`, its FP32 source), in place of grids chosen for weights it has since moved away
    from. On the reference model one such pass after an epoch of LiteRT QAT took the artifact's
    ΔMPJPE after the next epoch from 1.41 to 1.27 mm (README). Returns how many were calibrated."""
    adapted = qat_adapted_model(student, DeployModel(model, int8_embeddings=True).eval())
    graph = student_target(target).quantizable_graph(adapted, images[:1])
    return seed_activation_ranges(student, graph, target, plan, images)


def qat_adapted_model(student: torch.fx.GraphModule, deploy: torch.nn.Module) -> torch.nn.Module:
    """A copy of `deploy` (a `DeployModel` of the student's source) with its batch norms folded
    and each weight QAT trained as the student's fake quantizer rounds it (other trained
    parameters, such as biases, as they are): the float model a target whose quantizer rounds
    weights on the same grid turns into the student's int8 weights (LiteRT's)."""
    model = fold_batch_norms(copy.deepcopy(deploy))
    trained = {name: p for name, p in student.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for node in student.graph.nodes:
            if node.op != "get_attr" or node.target not in trained:
                continue
            quantizers = [u for u in node.users if u.op == "call_module" and "activation_post_process" in u.target]
            if quantizers:
                trained[node.target] = student.get_submodule(quantizers[0].target)(trained[node.target])
        own = dict(model.named_parameters())
        missing = trained.keys() - own.keys()
        if missing:
            raise ConversionError(f"the QAT graph has weights its deployed model lacks ({len(missing)}, e.g. {sorted(missing)[:3]})")
        for name, value in trained.items():
            own[name].copy_(value)
    return model


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


def _as_scored(vertices: torch.Tensor, joints: torch.Tensor, bone: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per hand, what MPJPE/MPVPE score (`lagchand_edge.metrics`): relative to the middle MCP and
    rescaled so that the wrist-MCP bone has the reference's length `bone`."""
    root = joints[..., MIDDLE_MCP : MIDDLE_MCP + 1, :]
    scale = bone / (joints[..., MIDDLE_MCP, :] - joints[..., WRIST, :]).norm(dim=-1).clamp_min(1e-6)
    return (vertices - root) * scale[..., None, None], (joints - root) * scale[..., None, None]


def distillation_loss(student: tuple, teacher: tuple) -> torch.Tensor:
    """L1 to the FP32 outputs (mm): vertices and joints as the drift gate scores them (root-aligned,
    rescaled by the wrist-MCP bone, where an int8 error in those two joints scales the whole hand),
    plus the raw outputs at half weight (apps read them unaligned) and the camera weighted alike."""
    vertices, joints, camera = student
    bone = (teacher[1][..., MIDDLE_MCP, :] - teacher[1][..., WRIST, :]).norm(dim=-1)
    scored = _as_scored(vertices, joints, bone)
    reference = _as_scored(teacher[0], teacher[1], bone)
    aligned = sum((a - b).abs().mean() for a, b in zip(scored, reference, strict=True))
    raw = (vertices - teacher[0]).abs().mean() + (joints - teacher[1]).abs().mean()
    return 1000 * (aligned + RAW_WEIGHT * raw) + CAMERA_WEIGHT * (camera - teacher[2]).abs().mean()


def save_qat(student: torch.fx.GraphModule, path: Path, info: dict) -> None:
    """The prepared graph's state and its sidecar, each written atomically."""
    # a fake quantizer shared by several ops is stored under each of its names (cloned: safetensors refuses aliases)
    tensors = {k: v.detach().clone().contiguous().cpu() for k, v in student.state_dict().items()}
    write_safetensors(path, tensors, {"format": FORMAT, "target": info["target"]})
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
    if not ok and str(info.get("format", "")).startswith("lagchand-edge-qat/"):
        raise UserError(f"{side}: a QAT checkpoint of another release ({info['format']}; this one reads {FORMAT}): run `lagchand-edge qat` again")
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
    plan = Int8Plan.from_dict(info["plan"])
    student = student_graph(quantizable(model, info["target"], plan), info["target"], plan)
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
    if opts.recalibrations < 0:
        raise UserError(f"--recalibrations is a count per epoch (0: never), not {opts.recalibrations}")
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
            "freeze_observers": opts.freeze_observers, "recalibrations_per_epoch": opts.recalibrations,
            "epochs_planned": opts.epochs, "lr": opts.lr, "command": " ".join(sys.argv)}
    done = _finished_part(opts, info)
    graph = quantizable(model, opts.target, opts.plan)
    student = student_graph(graph, opts.target, opts.plan)
    start_epoch, history = 0, []
    if done:
        load_state(student, opts.out, model.cfg.image_size)
        start_epoch, history = int(done["epoch"]), done["history"]
        info["activation_ranges"] = done["activation_ranges"]
    calibration = select_calibration(opts.data, opts.calib_num, opts.seed, opts.split, opts.mano_dir)
    if not done:
        seeded = seed_activation_ranges(student, graph, opts.target, opts.plan, calibration.images)
        info["activation_ranges"] = {"from": "PTQ calibration", "activations": seeded, **calibration.manifest()}
    recalibrated = info["activation_ranges"].setdefault("recalibrated_at_steps", [])
    teacher = DeployModel(model, deployed_form=False).eval()
    student = move_exported_model_to_train(student)
    optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=opts.lr)
    if start_epoch and optimizer_path(opts.out).is_file():
        load_optimizer(optimizer, opts.out)
    steps_per_epoch = len(dataset) // opts.batch_size
    total = steps_per_epoch * opts.epochs
    freeze_at = int(opts.freeze_observers * total)
    frozen = False
    recalibrate_every = max(1, steps_per_epoch // opts.recalibrations) if opts.recalibrations else 0
    for epoch in range(start_epoch, opts.epochs):
        loader = torch.utils.data.DataLoader(dataset, opts.batch_size, shuffle=True, collate_fn=collate, drop_last=True,
                                             generator=torch.Generator().manual_seed(opts.seed + epoch))
        steps, sums, started = 0, 0.0, time.perf_counter()
        for batch in loader:
            if batch is None:
                continue
            done_steps = epoch * steps_per_epoch + steps
            if recalibrate_every and done_steps and done_steps % recalibrate_every == 0:
                recalibrate_activation_ranges(student, model, opts.target, opts.plan, calibration.images)
                recalibrated.append(done_steps)
            if not frozen and done_steps >= freeze_at:
                student.apply(disable_observer)
                frozen = True
            for group in optimizer.param_groups:
                group["lr"] = lr_at(done_steps / total, opts.lr, "cosine", 0.0)
            images = to_model_input(batch["image"])
            with torch.no_grad():
                reference = teacher(images)
            loss = distillation_loss(per_image(student, images), reference)
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
