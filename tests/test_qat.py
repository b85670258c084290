"""Quantization-aware training: its activation grids start where PTQ stands and follow the weights
when re-calibrated, it beats PTQ at the same all-W8A8 plan, its checkpoint round-trips and guards
its lineage, and `convert --qat` builds the artifacts of the targets that train its student."""

import copy
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from lagchand_edge.errors import UserError
from tests.test_cli import assert_user_error, run_cli


def _images(root: Path, split: str) -> torch.Tensor:
    from lagchand_edge.data.cache import open_dataset
    from lagchand_edge.data.interhand import collate
    from lagchand_edge.data.transforms import to_model_input

    dataset = open_dataset(root, split, None, None)
    return to_model_input(collate([dataset[i] for i in range(len(dataset))])["image"])


def _deployed(model) -> torch.nn.Module:
    from lagchand_edge.model import DeployModel

    return DeployModel(model, int8_embeddings=True).eval()


def _ptq_graph(deployed: torch.nn.Module, calibration: torch.Tensor, plan=None, target: str = "executorch") -> torch.nn.Module:
    """`target`'s PTQ graph of a deployed model (batch 1) at `plan` (default: the all-W8A8 plan QAT
    trains), calibrated on `calibration`."""
    from calibration.plans import Int8Plan
    from converters import get_target

    return get_target(target).ptq_graph(deployed, calibration[:1], calibration, plan or Int8Plan())


def _seeded_student(target: str, model, plan, calibration: torch.Tensor) -> torch.fx.GraphModule:
    """The untrained QAT student of `model` at `plan`, its activation grids seeded by the target's PTQ calibration."""
    from calibration.qat import _activation_quantizers, quantizable, seed_activation_ranges, student_graph

    graph = quantizable(model, target, plan)
    student = student_graph(graph, target, plan)
    assert seed_activation_ranges(student, graph, target, plan, calibration) == len(_activation_quantizers(student))
    return student


def _ops(graph: torch.fx.GraphModule) -> Counter:
    return Counter(str(node.target) for node in graph.graph.nodes if node.op == "call_function")


def _tiny_qat(target: str, checkpoint: Path, data: Path, out: Path) -> Path:
    """Three epochs of `target`'s QAT on the 16 training images (observers frozen after half), on one
    thread, as the suite's xdist workers train it: on two (`-n 0`) the sums round otherwise and the
    tiny run's margins move (QAT's error over PTQ's 0.97 in one such run, where the test asks < 0.95)."""
    from calibration.qat import QATOptions, train_qat

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_qat(QATOptions(target=target, data=data, out=out, checkpoint=checkpoint, epochs=3, batch_size=4, lr=1e-4))
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def executorch_qat(tiny_checkpoint, synth_train_root, tmp_path_factory) -> Path:
    return _tiny_qat("executorch", tiny_checkpoint, synth_train_root, tmp_path_factory.mktemp("qat") / "tiny_qat.safetensors")


def test_qat_drifts_less_than_ptq_at_the_same_all_w8a8_plan(executorch_qat, synth_train_root, synth_root):
    """Held-out images; PTQ calibrated on the images QAT trained on, with the toolkit's default observer."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from calibration.qat import load_qat, per_image
    from lagchand_edge.model import DeployModel

    graph, model, _ = load_qat(executorch_qat)
    test = _images(synth_root, "test")
    ptq = _ptq_graph(_deployed(model), _images(synth_train_root, "train"))
    with torch.no_grad():
        reference = DeployModel(model, deployed_form=False)(test)[0]
        qat_error = float((per_image(convert_pt2e(graph), test)[0] - reference).abs().mean()) * 1000
        ptq_error = float((per_image(ptq, test)[0] - reference).abs().mean()) * 1000
    assert 0 < qat_error < 0.95 * ptq_error, (qat_error, ptq_error)


def _litert_input_dtypes(model: Path, op_name: str) -> set:
    """The dtypes of the non-constant inputs of every `op_name` op of a `.tflite`."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model))
    tensors = {d["index"]: d for d in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    activations = {i for op in ops for i in op["outputs"]} | {d["index"] for d in interpreter.get_input_details()}
    return {tensors[i]["dtype"] for op in ops if op["op_name"] == op_name for i in op["inputs"] if i in activations}


@pytest.fixture(scope="module")
def litert_qat(tiny_checkpoint, synth_train_root, tmp_path_factory) -> Path:
    """The same QAT run for LiteRT (it trains ExecuTorch's graph under XNNPACK's scheme)."""
    return _tiny_qat("tflite", tiny_checkpoint, synth_train_root, tmp_path_factory.mktemp("qat") / "tiny_qat_litert.safetensors")


@pytest.fixture(scope="module")
def qat_calibration(tmp_path_factory) -> Path:
    """8 images of their own, for LiteRT's activation calibration of QAT and PTQ alike."""
    from lagchand_edge.data.synth import write_dataset

    return write_dataset(tmp_path_factory.mktemp("qat_calib") / "calib", 8, seed=7, split="test", workers=1)


@pytest.fixture(scope="module")
def qat_artifacts(executorch_qat, qat_calibration, tmp_path_factory) -> dict:
    """`convert --qat` of the ExecuTorch run for every target its student serves, by directory name."""
    from lagchand_edge.convert import build_artifacts

    results = build_artifacts("all", "int8", tmp_path_factory.mktemp("qat_art"), calib_data=qat_calibration, calib_num=8, qat=executorch_qat)
    return {r.path.name: r for r in results}


def test_litert_qat_artifact_drifts_less_than_ptq_at_the_same_all_w8a8_plan(qat_artifacts, qat_calibration, tiny_checkpoint, synth_root,
                                                                             tmp_path):
    """Both artifacts all-W8A8, calibrated by AI Edge Quantizer on the same images of their own with
    the same (histogram) observer; held-out images, through the LiteRT interpreter."""
    from calibration.plans import Int8Plan
    from converters.tflite import FLOAT_IN_STATIC_OPS
    from lagchand_edge.artifact import load_runner, read_manifest
    from lagchand_edge.checkpoint import load_checkpoint
    from lagchand_edge.convert import build_artifacts
    from lagchand_edge.model import DeployModel

    qat = qat_artifacts["tflite-int8"]  # the ExecuTorch run's: the same student as a LiteRT run's (test below)
    [ptq] = build_artifacts("tflite", "int8", tmp_path / "ptq", checkpoint=tiny_checkpoint, calib_data=qat_calibration, calib_num=8,
                            int8_plan=Int8Plan(), observer="histogram")
    manifest = read_manifest(qat.path)
    assert manifest["recipe"]["quantizer"].startswith("QAT, XNNPACKQuantizer") and manifest["calibration"]["count"] == 8
    # all-W8A8, but the ops LiteRT's XNNPACK has no int8 kernel for stay float
    assert _litert_input_dtypes(qat.path / "model.tflite", "FULLY_CONNECTED") == {np.int8}
    for op in FLOAT_IN_STATIC_OPS:
        assert _litert_input_dtypes(qat.path / "model.tflite", op) == {np.float32}, op
    test = _images(synth_root, "test")
    with torch.no_grad():
        reference = DeployModel(load_checkpoint(tiny_checkpoint), deployed_form=False)(test)[0].numpy()
    errors = {name: float(np.abs(load_runner(result.path)(test.numpy()).vertices - reference).mean()) * 1000
              for name, result in (("qat", qat), ("ptq", ptq))}
    assert 0 < errors["qat"] < 0.95 * errors["ptq"], errors


@pytest.fixture(scope="module", params=["executorch", pytest.param("coreml", marks=pytest.mark.slow)])  # CoreMLQuantizer annotates in ~1 min
def seeded_student(request, tiny_checkpoint, synth_train_root) -> tuple:
    """(target, model, plan, calibration images, the untrained student seeded by them): copy it before use."""
    from calibration.plans import Int8Plan
    from lagchand_edge.checkpoint import load_checkpoint

    target, model, plan, calibration = request.param, load_checkpoint(tiny_checkpoint), Int8Plan(), _images(synth_train_root, "train")[:8]
    return target, model, plan, calibration, _seeded_student(target, model, plan, calibration)


def _assert_grids_fixed(student: torch.fx.GraphModule) -> None:
    """Every activation fake quantizer stopped observing, on a finite grid that `convert_pt2e`
    (which asks the observer) will use too."""
    from calibration.qat import _activation_quantizers

    quantizers = _activation_quantizers(student).values()
    assert len(quantizers) > 20 and not any(bool(q.observer_enabled) for q in quantizers)
    for q in quantizers:
        scale, zero_point = q.calculate_qparams()
        assert torch.allclose(scale, q.scale, rtol=1e-6) and torch.equal(zero_point.to(q.zero_point.dtype), q.zero_point)
        assert torch.isfinite(scale).all() and (scale > 0).all()  # every one saw the calibration images


def test_qat_starts_where_the_targets_ptq_stands(seeded_student, synth_root):
    """Every activation fake quantizer takes the grid PTQ's calibration chose, and stops observing;
    the untrained student then computes what the PTQ artifact's graph computes."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from calibration.qat import per_image

    target, model, _, calibration, seeded = seeded_student
    student = copy.deepcopy(seeded)
    _assert_grids_fixed(student)
    test = _images(synth_root, "test")
    with torch.no_grad():
        student(test[:1])  # the weights' observers see their weights once
        qat_graph = convert_pt2e(move_exported_model_to_eval(student))
        ptq_graph = _ptq_graph(_deployed(model), calibration, target=target)
        qat, ptq = per_image(qat_graph, test)[0], per_image(ptq_graph, test)[0]
        reference = _deployed(model)(test)[0]
    assert _ops(qat_graph) == _ops(ptq_graph)  # QAT trained the graph PTQ deploys: same ops, same quantization points
    # the same int8 grids (rebuilt from their ranges, so a last bit apart): a value on a rounding edge
    # rounds a step apart, which reaches about a third of the outputs
    apart, gap = (qat - ptq).abs(), (ptq - reference).abs()
    assert float(apart.median()) < 0.01 * float(gap.median())  # most outputs agree to float rounding
    # measured 0.19 (ExecuTorch, whose bound stays the 0.25 it had before CoreML joined), 0.25-0.27 (CoreML)
    assert float(apart.mean()) < (0.25 if target == "executorch" else 0.4) * float(gap.mean())


def test_executorch_qat_gives_float_activations_the_dynamic_int8_ptq_gives_them(tiny_checkpoint, synth_train_root, synth_root):
    """A plan's float_activations modules train in float; ExecuTorch's QAT int8 graph then gives them
    XNNPACK's dynamic int8 (int8 weights), as PTQ at that plan does, instead of shipping them fp32:
    the untrained student converts to PTQ's graph, op for op, and computes what it computes."""
    from torchao.quantization.pt2e import move_exported_model_to_eval

    from calibration.plans import Int8Plan
    from calibration.qat import per_image
    from converters import executorch
    from lagchand_edge.checkpoint import load_checkpoint

    model, plan = load_checkpoint(tiny_checkpoint), Int8Plan(float_activations=("model.graph.blocks.1",))
    calibration, test = _images(synth_train_root, "train")[:8], _images(synth_root, "test")
    student = _seeded_student("executorch", model, plan, calibration)
    with torch.no_grad():
        student(test[:1])  # the weights' observers see their weights once
        qat_graph = executorch.qat_int8_graph(move_exported_model_to_eval(student), plan, test[:1])
        ptq_graph = _ptq_graph(_deployed(model), calibration, plan)
        qat, ptq = per_image(qat_graph, test)[0], per_image(ptq_graph, test)[0]
        reference = _deployed(model)(test)[0]

    def beside_static_pairs(ops: Counter) -> Counter:  # PTQ, annotating both schemes in one pass, requantizes once more at the scope's edge
        return Counter({op: n for op, n in ops.items() if not op.endswith("quantize_per_tensor.default")})

    assert _ops(qat_graph)["quantized_decomposed.choose_qparams.tensor"] > 0
    assert beside_static_pairs(_ops(qat_graph)) == beside_static_pairs(_ops(ptq_graph))
    assert float((qat - ptq).abs().mean()) < 0.25 * float((ptq - reference).abs().mean())


def test_recalibration_gives_the_grids_ptq_picks_for_the_weights_as_trained(seeded_student):
    """Weights moved by training (here by 20% noise) outgrow or underfill the seeded grids;
    re-calibrating sets each grid anew, as the target's PTQ calibration of the weights as they
    round picks it, and fixes it again."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from calibration.qat import _activation_quantizers, qat_adapted_model, recalibrate_activation_ranges, student_target

    target, model, plan, calibration, seeded = seeded_student
    student, generator = copy.deepcopy(seeded), torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in student.parameters():
            if parameter.requires_grad and parameter.dim() > 1:
                parameter.mul_(1 + 0.2 * torch.randn(parameter.shape, generator=generator))
    stale = {key: q.scale.clone() for key, q in _activation_quantizers(student).items()}
    assert recalibrate_activation_ranges(student, model, target, plan, calibration) == len(stale)
    _assert_grids_fixed(student)
    grids = _activation_quantizers(student)
    moved = [key for key, q in grids.items() if not torch.allclose(q.scale, stale[key], rtol=0.05)]
    assert len(moved) > len(stale) // 3, (len(moved), len(stale))
    converter = student_target(target)
    ptq = prepare_pt2e(converter.quantizable_graph(qat_adapted_model(student, _deployed(model)), calibration[:1]),
                       converter.ptq_quantizer(plan))
    with torch.no_grad():
        for image in calibration:
            ptq(image[None])
    for key, observer in _activation_quantizers(ptq).items():
        assert torch.allclose(observer.calculate_qparams()[0], grids[key].scale, rtol=1e-5), key


def test_qat_checkpoint_round_trips_with_its_lineage(executorch_qat, tiny_checkpoint):
    from safetensors.torch import load_file

    from calibration.qat import load_qat
    from lagchand_edge.io import file_sha256

    graph, _, info = load_qat(executorch_qat)
    saved = load_file(str(executorch_qat))
    state = graph.state_dict()
    assert saved.keys() == state.keys() and all(torch.equal(saved[k], state[k]) for k in saved)
    assert info["target"] == "executorch" and "XNNPACKQuantizer" in info["scheme"] and info["plan"]["static_w8a8"] == ["model"]
    assert info["source"]["checkpoint_sha256"] == file_sha256(tiny_checkpoint)
    assert [h["observers_frozen"] for h in info["history"]] == [False, True, True]
    assert info["activation_ranges"]["from"] == "PTQ calibration" and info["activation_ranges"]["count"] == 16
    assert info["recalibrations_per_epoch"] == 1 and info["activation_ranges"]["recalibrated_at_steps"] == [4, 8]  # 4 steps an epoch


def test_qat_resume_continues_and_refuses_another_run(executorch_qat, tiny_checkpoint, synth_train_root, tmp_path):
    from calibration.qat import QATOptions, train_qat

    for name in (executorch_qat.name, executorch_qat.with_suffix(".json").name, executorch_qat.with_suffix(".optimizer.safetensors").name):
        shutil.copy(executorch_qat.parent / name, tmp_path / name)
    out = tmp_path / executorch_qat.name
    options = QATOptions(target="executorch", data=synth_train_root, out=out, checkpoint=tiny_checkpoint, epochs=4, batch_size=4, lr=1e-4,
                         resume=True)
    info = train_qat(options)
    assert [h["epoch"] for h in info["history"]] == [1, 2, 3, 4] and info["activation_ranges"]["recalibrated_at_steps"] == [4, 8, 12]
    options.epochs, options.target = 5, "coreml"
    with pytest.raises(UserError, match="another target"):
        train_qat(options)


def test_qat_refuses_changed_weights_or_source(executorch_qat, tmp_path):
    from calibration.qat import load_qat, read_qat_info

    copy = tmp_path / executorch_qat.name
    shutil.copy(executorch_qat, copy)
    sidecar = json.loads(executorch_qat.with_suffix(".json").read_text())
    copy.with_suffix(".json").write_text(json.dumps(sidecar | {"sha256": "0" * 64}))
    with pytest.raises(UserError, match="sha256 differs"):
        read_qat_info(copy)
    copy.with_suffix(".json").write_text(json.dumps(sidecar | {"format": "lagchand-edge-qat/1"}))
    with pytest.raises(UserError, match="another release"):  # trained a batch-generic graph, not the deployed one
        read_qat_info(copy)
    sidecar["source"]["checkpoint_sha256"] = "0" * 64
    copy.with_suffix(".json").write_text(json.dumps(sidecar))
    with pytest.raises(UserError, match="changed since QAT"):
        load_qat(copy)


def test_executorch_and_litert_qat_train_one_student(executorch_qat, litert_qat):
    """The same run for either target (same data, seed and plan) ends in the same weights and
    grids, to the bit: what lets one checkpoint convert to both."""
    from safetensors.torch import load_file

    trained_for_executorch, trained_for_litert = load_file(str(executorch_qat)), load_file(str(litert_qat))
    assert trained_for_executorch.keys() == trained_for_litert.keys()
    assert all(torch.equal(trained_for_executorch[name], trained_for_litert[name]) for name in trained_for_executorch)


def test_convert_qat_builds_every_target_of_its_student_with_lineage(qat_artifacts, executorch_qat, tiny_checkpoint):
    from lagchand_edge.artifact import read_manifest
    from lagchand_edge.io import file_sha256
    from lagchand_edge.model_card import MODEL_CARD

    assert list(qat_artifacts) == ["executorch-int8", "tflite-int8"]
    for result in qat_artifacts.values():
        manifest = read_manifest(result.path)
        # all-W8A8 on the tiny model: 25-26 mm at most over the 4 parity images, measured
        assert np.isfinite(result.parity_max_vertex_mm) and result.parity_max_vertex_mm < 50, result
        assert manifest["qat"]["checkpoint_sha256"] == file_sha256(executorch_qat) and manifest["qat"]["trained_for"] == "executorch"
        assert manifest["source"]["checkpoint_sha256"] == file_sha256(tiny_checkpoint)  # drift compares with the original FP32
        assert manifest["recipe"]["quantizer"].startswith("QAT, XNNPACKQuantizer")
    executorch_manifest, litert_manifest = (read_manifest(r.path) for r in qat_artifacts.values())
    assert executorch_manifest["calibration"] is None  # its grids are the trained ones
    assert litert_manifest["calibration"]["count"] == 8 and "AI Edge Quantizer" in litert_manifest["qat"]["scheme"]
    assert "trained as executorch's, the same student" in (qat_artifacts["tflite-int8"].path / MODEL_CARD).read_text()


def test_qat_cli_says_each_mistake_in_one_line(executorch_qat, tiny_checkpoint, synth_root):
    assert_user_error(run_cli("qat", "--target", "nope", "--data", str(synth_root)), "QAT is available for --target")
    assert_user_error(run_cli("qat", "--target", "executorch", "--data", str(synth_root), "--split", "test", "--freeze-observers", "2"),
                      "fraction of training")
    assert_user_error(run_cli("qat", "--target", "executorch", "--data", str(synth_root), "--split", "test", "--recalibrations", "-1"),
                      "'--recalibrations'")
    assert_user_error(run_cli("convert", "--qat", str(executorch_qat), "--target", "coreml"), "converts for --target executorch or tflite")
    assert_user_error(run_cli("convert", "--qat", str(executorch_qat), "--checkpoint", str(tiny_checkpoint)), "drop --checkpoint")
    assert_user_error(run_cli("convert", "--qat", str(executorch_qat), "--precision", "fp16"), "builds int8 artifacts")
    assert_user_error(run_cli("convert", "--qat", str(tiny_checkpoint)), "not a QAT checkpoint")


def test_distillation_scores_the_hands_as_the_drift_gate_does():
    """A hand scaled about its root and moved is the same hand to MPJPE: only the raw term sees it;
    a bent finger is seen by both."""
    from calibration.qat import RAW_WEIGHT, distillation_loss
    from lagchand_edge.hand.joints import MIDDLE_MCP

    generator = torch.Generator().manual_seed(0)
    joints, vertices, camera = (torch.randn(2, 2, n, 3, generator=generator) * 0.05 for n in (21, 50, 1))
    camera = camera[:, :, 0]
    teacher = (vertices, joints, camera)
    assert float(distillation_loss(teacher, teacher)) == 0.0
    root = joints[..., MIDDLE_MCP : MIDDLE_MCP + 1, :]
    moved = tuple((x - root) * 1.1 + root + 0.01 for x in (vertices, joints)) + (camera,)
    raw = sum(float((a - b).abs().mean()) for a, b in zip(moved[:2], teacher[:2], strict=True))
    assert float(distillation_loss(moved, teacher)) == pytest.approx(1000 * RAW_WEIGHT * raw, rel=1e-4)
    bent = joints.clone()
    bent[..., 3, :] += 0.01  # a fingertip, not the wrist or the middle MCP
    assert float(distillation_loss((vertices, bent, camera), teacher)) > 1000 * (1 + RAW_WEIGHT) * 0.01 / 21 * 0.99
