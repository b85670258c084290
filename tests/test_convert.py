"""Converters end to end on the tiny config: real runtimes on real artifacts."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from calibration.plans import DEFAULT_INT8_PLAN, Int8Plan
from calibration.select import select_calibration
from converters import get_target
from lagchand_edge.artifact import MANIFEST, load_runner, read_manifest
from lagchand_edge.convert import build_artifacts, targets_for
from lagchand_edge.errors import UserError

FP32_PARITY_MM = 0.01  # the most an fp32 artifact's vertices may differ from the model's
INT8_PARITY_MM = 5.0  # int8 (default plans) on the trained tiny model: 0.4-1.9 mm measured
INT8_JOINT_PX = 6.0  # mean int8 2D joint error (crop pixels) against the model's: 0.4-4.9 px measured, 4.3-14 px between images
KEPT_GRAPH_PARITY_MM = 40.0  # all but the graph decoder W8A8 (ExecuTorch, minmax observer): 17.8 mm measured; bounds a broken artifact
ALL_W8A8_JOINT_PX = 40.0  # the all-W8A8 plan, int8 input and outputs: 21 px measured; raw int8 codes would be hundreds


def _reference(checkpoint, images):
    from lagchand_edge.checkpoint import load_checkpoint

    with torch.no_grad():
        return load_checkpoint(checkpoint)(torch.as_tensor(images))


def test_fp32_artifacts_reproduce_the_model(fp32_artifacts, tiny_checkpoint, synth_root):
    images = select_calibration(synth_root, 3, seed=9).images.numpy()
    vertices = _reference(tiny_checkpoint, images)[0].numpy()
    for target in ("executorch", "tflite"):
        result = fp32_artifacts[target]
        assert result.parity_max_vertex_mm is not None and result.parity_max_vertex_mm <= FP32_PARITY_MM
        got = load_runner(result.path)(images)
        assert np.abs(got.vertices - vertices).max() * 1000 <= FP32_PARITY_MM
        assert got.joints.shape == (3, 2, 21, 3) and got.camera.shape == (3, 2, 3)


def test_parity_check_sees_a_wrong_input(fp32_artifacts, tiny_checkpoint, synth_root):
    """The test model follows the image, so the parity check above can fail: two images give
    vertices far apart, and each artifact fed BGR or a mirrored image misses parity by far."""
    images = select_calibration(synth_root, 2, seed=9).images.numpy()
    vertices, _, camera = (t.numpy() for t in _reference(tiny_checkpoint, images)[:3])
    assert np.abs(vertices[0] - vertices[1]).max() * 1000 > 50 * FP32_PARITY_MM
    assert np.abs(camera[0] - camera[1]).max() > 0.01
    wrong_inputs = {"BGR": images[:, ::-1], "mirrored": images[..., ::-1]}
    for target, result in fp32_artifacts.items():
        runner = load_runner(result.path)
        for name, wrong in wrong_inputs.items():
            missed_by = np.abs(runner(np.ascontiguousarray(wrong)).vertices - vertices).max() * 1000
            assert missed_by > 10 * FP32_PARITY_MM, (target, name)


def test_manifest_records_what_a_user_needs(fp32_artifacts, tiny_checkpoint):
    manifest = read_manifest(fp32_artifacts["executorch"].path)
    assert manifest["target"] == "executorch" and manifest["precision"] == "fp32"
    assert manifest["source"]["config"] == "tiny" and len(manifest["source"]["checkpoint_sha256"]) == 64
    assert manifest["inputs"][0]["shape"] == [1, 3, 256, 256] and manifest["inputs"][0]["range"] == [0.0, 1.0]
    assert [o["name"] for o in manifest["outputs"]] == ["vertices", "joints", "camera"]
    assert manifest["size_bytes"] == (fp32_artifacts["executorch"].path / "model.pte").stat().st_size
    assert manifest["tools"]["executorch"] == "1.5.1"
    assert manifest["recipe"]["delegation"]["delegated_subgraphs"] >= 1


def test_artifacts_name_their_tensors_and_describe_themselves(fp32_artifacts, int8_artifacts, tiny_checkpoint):
    """What an app sees with the plain runtimes: named I/O, the metadata inside the file, a model card beside it."""
    import coremltools as ct
    from ai_edge_litert.interpreter import Interpreter

    from converters.tflite import read_metadata
    from lagchand_edge.io import file_sha256

    sha = file_sha256(tiny_checkpoint)
    for result in (fp32_artifacts["tflite"], int8_artifacts["tflite"]):
        model = result.path / "model.tflite"
        interpreter = Interpreter(model_path=str(model))
        assert interpreter.get_signature_list() == {"serving_default": {"inputs": ["image"], "outputs": ["camera", "joints", "vertices"]}}
        assert [d["name"] for d in interpreter.get_output_details()] == ["vertices", "joints", "camera"]  # the runners' order
        metadata = read_metadata(model)
        assert metadata["source_checkpoint_sha256"] == sha and metadata["outputs"][1]["shape"] == [1, 2, 21, 3]
    spec = ct.models.MLModel(str(fp32_artifacts["coreml"].path / "model.mlpackage"), skip_model_load=True).get_spec()
    assert [i.name for i in spec.description.input] == ["image"] and [o.name for o in spec.description.output] == ["vertices", "joints", "camera"]
    assert spec.description.metadata.userDefined["source_checkpoint_sha256"] == sha and "0 left" in spec.description.metadata.shortDescription
    for results in (fp32_artifacts, int8_artifacts):
        for result in results.values():
            card = (result.path / "MODEL_CARD.md").read_text()
            manifest = json.loads((result.path / "manifest.json").read_text())
            assert card.startswith(f"# LAGCHand, {result.target} {result.precision}") and manifest["sha256"][:16] in card
            assert "| output `joints` | [1, 2, 21, 3] |" in card and ("calibrated on" in card) == (result.precision == "int8")


def test_tampered_and_newer_artifacts_are_refused(fp32_artifacts, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(fp32_artifacts["tflite"].path, copy)
    model = copy / "model.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(UserError, match="sha256 does not match"):
        load_runner(copy)
    shutil.copy(fp32_artifacts["tflite"].path / "model.tflite", model)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["schema_version"] = 99
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="newer than this lagchand-edge"):
        load_runner(copy)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(schema_version="1"), "'schema_version' must be int"),
    (lambda m: m.update(schema_version=None), "'schema_version' must be int"),
    (lambda m: m.pop("target"), "'target' must be str (missing)"),
    (lambda m: m.update(source=None), "'source' must be dict"),
    (lambda m: m.update(file="../other/model.tflite"), "not a file inside the artifact folder"),
    (lambda m: m.update(file="/etc/passwd"), "not a file inside the artifact folder"),
], ids=["version-string", "version-null", "no-target", "source-null", "file-outside", "file-absolute"])
def test_malformed_manifests_are_one_clear_error(fp32_artifacts, tmp_path, edit, message):
    copy = tmp_path / "copy"
    shutil.copytree(fp32_artifacts["tflite"].path, copy)
    (tmp_path / "other").mkdir()
    shutil.copy(copy / "model.tflite", tmp_path / "other/model.tflite")  # a valid model outside the folder: still refused
    manifest = json.loads((copy / MANIFEST).read_text())
    edit(manifest)
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=re.escape(message)):
        load_runner(copy)
    (copy / MANIFEST).write_text(json.dumps([manifest]))
    with pytest.raises(UserError, match="a JSON object is expected, found list"):
        load_runner(copy)


def test_foreign_models_open_as_raw_runners(fp32_artifacts, tmp_path):
    for target, name in (("executorch", "model.pte"), ("tflite", "model.tflite")):
        foreign = tmp_path / f"other_{name}"
        shutil.copy(fp32_artifacts[target].path / name, foreign)
        runner = load_runner(foreign)
        outputs = runner.raw([np.zeros((1, 3, 256, 256), np.float32)])
        assert [o.shape for o in outputs] == [(1, 2, 780, 3), (1, 2, 21, 3), (1, 2, 3)]
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    with pytest.raises(UserError, match="not a model this toolkit runs"):
        load_runner(junk)


def _relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_coreml_fp32_runs_in_the_interpreter_like_the_model(fp32_artifacts, tiny_checkpoint, synth_root):
    result = fp32_artifacts["coreml"]
    assert (result.path / "model.mlpackage" / "Manifest.json").is_file()
    assert result.parity_max_vertex_mm is not None and result.parity_max_vertex_mm <= FP32_PARITY_MM
    runner = load_runner(result.path)
    assert runner.backend.RUNTIME == "coreml-sim"
    images = select_calibration(synth_root, 3, seed=4).images
    want = _reference(tiny_checkpoint, images.numpy())
    got = runner(images.numpy())
    for name, reference in zip(("vertices", "joints", "camera"), want[:3], strict=True):
        assert _relative_error(getattr(got, name), reference.numpy()) <= 1e-4, name


def test_int8_artifacts_are_smaller_and_run(int8_artifacts, fp32_artifacts):
    assert set(int8_artifacts) == {"executorch", "tflite", "coreml"}
    for target in ("executorch", "tflite", "coreml"):
        assert int8_artifacts[target].parity_max_vertex_mm <= INT8_PARITY_MM, target
        assert int8_artifacts[target].size_bytes < fp32_artifacts[target].size_bytes
    assert int8_artifacts["tflite"].size_bytes < 0.5 * fp32_artifacts["tflite"].size_bytes
    manifest = read_manifest(int8_artifacts["executorch"].path)
    assert manifest["calibration"]["count"] == 8 and len(manifest["calibration"]["ids"]) == 8


def _joints_px(joints: np.ndarray, camera: np.ndarray) -> np.ndarray:
    from lagchand_edge.data.transforms import weak_perspective_px

    return weak_perspective_px(np.asarray(joints), np.asarray(camera))


def test_int8_artifacts_follow_the_image(int8_artifacts, tiny_checkpoint, synth_root):
    """Each int8 artifact's 2D joints lie within a few pixels of the model's for the same image, and
    nearer to them than to the model's for any other image: it sees the image, not a mean pose."""
    images = select_calibration(synth_root, 8, seed=0).images.numpy()
    _, joints, camera = _reference(tiny_checkpoint, images)[:3]
    want = _joints_px(joints.numpy(), camera.numpy())
    for target, result in int8_artifacts.items():
        got = load_runner(result.path)(images)
        distance = np.linalg.norm(_joints_px(got.joints, got.camera)[:, None] - want[None], axis=-1).mean(axis=(2, 3))  # [artifact, model image]
        same = np.diag(distance)
        assert same.max() <= INT8_JOINT_PX, (target, same)
        assert (same < np.where(np.eye(len(images), dtype=bool), np.inf, distance).min(axis=1)).all(), (target, distance)


def test_int8_tflite_keeps_float_io(tiny_checkpoint, synth_root, tmp_path):
    # The all-W8A8 plan quantizes the graph's input and outputs too: the model takes int8
    (result,) = build_artifacts("tflite", "int8", tmp_path, tiny_checkpoint, calib_data=synth_root, calib_num=4, int8_plan=Int8Plan())
    runner = load_runner(result.path)
    assert runner.backend.inputs[0]["dtype"] == np.int8
    images = select_calibration(synth_root, 2, seed=0).images.numpy()
    prediction = runner(images)  # callers pass floats; outputs come back dequantized
    _, joints, camera = _reference(tiny_checkpoint, images)[:3]
    assert prediction.vertices.dtype == np.float32
    assert np.abs(_joints_px(prediction.joints, prediction.camera) - _joints_px(joints.numpy(), camera.numpy())).max() <= ALL_W8A8_JOINT_PX


def test_int8_tflite_stores_embedding_tables_as_int8(int8_artifacts):
    # litert-torch folds the int8 tables back to fp32 constants; the converter puts int8 back
    from ai_edge_litert.tools import flatbuffer_utils

    path = int8_artifacts["tflite"].path
    flat = flatbuffer_utils.read_model(str(path / "model.tflite"))
    graph = flat.subgraphs[0]
    names = {index: flatbuffer_utils.opcode_to_name(flat, op.opcodeIndex) for index, op in enumerate(graph.operators)}
    added = {i for index, op in enumerate(graph.operators) if names[index] == "ADD" for i in op.inputs}
    float_constants = [graph.tensors[i] for i in added if graph.tensors[i].type == 0 and flat.buffers[graph.tensors[i].buffer].data is not None]
    large = [list(t.shape) for t in float_constants if np.prod(t.shape) >= 1024]
    assert large == [[1, 2, 780, 3]]  # only the mean hands (output coordinates) stay fp32
    assert read_manifest(path)["recipe"]["int8_added_constants"] == 6  # 3 vertex + 3 image tables


def test_int8_tflite_runs_float_activation_scopes_as_dynamic_int8(int8_artifacts):
    """The graph decoder and the encoder's transformer stages (float activations in LiteRT's plan)
    run their fully connected layers and convolutions on int8 weights read directly with float
    inputs (dynamic int8, quantized per call), not on int8 weights dequantized to float first,
    which would run them as fp32 GEMMs."""
    from ai_edge_litert.tools import flatbuffer_utils

    flat = flatbuffer_utils.read_model(str(int8_artifacts["tflite"].path / "model.tflite"))
    graph = flat.subgraphs[0]
    name = lambda op: flatbuffer_utils.opcode_to_name(flat, op.opcodeIndex)  # noqa: E731
    dequantized = {int(op.outputs[0]) for op in graph.operators if name(op) == "DEQUANTIZE"}
    scopes = ("model.graph.", "model.encoder.layers.2.1.", "model.encoder.layers.3.1.", "model.encoder.layers.4.1.")
    dynamic = [op for op in graph.operators if name(op) in ("FULLY_CONNECTED", "CONV_2D")
               and graph.tensors[op.outputs[0]].name.decode().startswith(scopes)]
    assert {name(op) for op in dynamic} == {"FULLY_CONNECTED", "CONV_2D"}
    for op in dynamic:
        activations, weights = (graph.tensors[i] for i in op.inputs[:2])
        assert op.inputs[1] not in dequantized and weights.type == 9 and activations.type == 0  # INT8 weights, FLOAT32 input


def test_executorch_nearest_upsampling_rewrite_is_exact(tiny_checkpoint):
    from converters.executorch import _nearest_upsampling_as_copies
    from lagchand_edge.checkpoint import load_checkpoint
    from lagchand_edge.model import DeployModel

    image = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(3))
    module = torch.export.export(DeployModel(load_checkpoint(tiny_checkpoint)).eval(), (image,)).module()
    before = module(image)
    rewritten = _nearest_upsampling_as_copies(module)
    assert not [n for n in rewritten.graph.nodes if "upsample" in str(n.target)]
    for expected, got in zip(before, rewritten(image), strict=True):
        assert torch.equal(expected, got)


def test_executorch_layer_norm_rewrite_keeps_the_outputs_and_leaves_xnnpack_nothing_to_miss(tiny_checkpoint, fp32_artifacts, int8_artifacts):
    from converters.executorch import _layer_norm_as_xnnpack_ops
    from lagchand_edge.checkpoint import load_checkpoint
    from lagchand_edge.model import DeployModel

    model = DeployModel(load_checkpoint(tiny_checkpoint)).eval()
    for batch in (1, 2):  # the encoder's token norms: over a whole 3-D tensor at batch 1, over each sample's 3 axes beyond
        image = torch.rand(batch, 3, 256, 256, generator=torch.Generator().manual_seed(4))
        module = torch.export.export(model, (image,)).module()
        norms = sum(n.target == torch.ops.aten.layer_norm.default for n in module.graph.nodes)
        pools = sum(n.target == torch.ops.aten.mean.dim for n in module.graph.nodes)
        before = module(image)
        rewritten = _layer_norm_as_xnnpack_ops(module)
        assert norms >= 10 and not [n for n in rewritten.graph.nodes if "layer_norm" in str(n.target)]
        # at batch 1 (every artifact) the means are linear layers: XNNPACK's pool would need transposes around it
        added_pools = sum(n.target == torch.ops.aten.mean.dim for n in rewritten.graph.nodes) - pools
        assert (added_pools == 0) if batch == 1 else (added_pools > 0)
        for expected, got in zip(before, rewritten(image), strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    for artifacts in (fp32_artifacts, int8_artifacts):  # both lowered without a portable layer norm or broadcast copy
        portable = read_manifest(artifacts["executorch"].path)["recipe"]["delegation"]["portable_ops"]
        assert not [op for op in portable if "layer_norm" in op or "expand" in op]


def test_executorch_int8_tables_are_cast_inside_the_delegate(tiny_checkpoint, int8_artifacts):
    from converters.executorch import _int8_casts_as_dequantize
    from lagchand_edge.checkpoint import load_checkpoint
    from lagchand_edge.model import DeployModel

    model = DeployModel(load_checkpoint(tiny_checkpoint), int8_embeddings=True).eval()
    image = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(5))
    module = torch.export.export(model, (image,)).module()
    casts = [n for n in module.graph.nodes if n.target in (torch.ops.aten.to.dtype, torch.ops.aten._to_copy.default)]
    before = module(image)
    rewritten = _int8_casts_as_dequantize(module)
    dequantized = [n for n in rewritten.graph.nodes if n.target == torch.ops.quantized_decomposed.dequantize_per_tensor.default]
    assert len(casts) == len(dequantized) == 6  # three vertex and three image embedding tables
    for expected, got in zip(before, rewritten(image), strict=True):
        assert torch.equal(expected, got)
    # the artifact: no portable cast left running on every call
    portable = read_manifest(int8_artifacts["executorch"].path)["recipe"]["delegation"]["portable_ops"]
    assert not [op for op in portable if "dim_order" in op]


def test_executorch_graphs_concatenate_no_tensor_with_itself(fp32_artifacts, int8_artifacts):
    """XNNPACK's partitioner refuses a concatenation of one tensor repeated, which then runs as a
    portable kernel that splits the delegate: the deployed form and the upsampling rewrite write none."""
    for artifacts in (fp32_artifacts, int8_artifacts):
        delegation = read_manifest(artifacts["executorch"].path)["recipe"]["delegation"]
        assert not [op for op in delegation["portable_ops"] if "cat" in op or "stack" in op]


@pytest.mark.parametrize("stage", ["load", "execute"])
def test_an_artifact_that_fails_in_its_runtime_leaves_nothing_behind(tiny_checkpoint, fp32_artifacts, tmp_path, monkeypatch, stage):
    import converters.executorch

    built = fp32_artifacts["executorch"].path / "model.pte"  # built (lazily) before the patches below

    def converted(model, example, recipe, out_dir):  # the fixture's conversion stands in for a fresh one (28 s)
        shutil.copy(built, out_dir / "model.pte")
        return {}

    class Failing:  # what ExecuTorch says when a lowered XNNPACK graph cannot load or run (both seen)
        def __init__(self, path, threads=None):
            if stage == "load":
                raise RuntimeError("Failed to load method forward, error: 0x1")

        def run(self, inputs):
            raise RuntimeError("method->execute() failed with error 0x1")

    monkeypatch.setattr(converters.executorch, "write_model", converted)
    monkeypatch.setattr(converters.executorch, "open_runner", Failing)
    with pytest.raises(UserError, match="fails in its runtime: .*error:? 0x1"):  # an installed runtime's failure is no skip
        build_artifacts("executorch", "fp32", tmp_path, tiny_checkpoint)
    assert list(tmp_path.iterdir()) == []


def test_a_converter_failing_mid_write_keeps_the_artifact_it_was_to_replace(tiny_checkpoint, fp32_artifacts, tmp_path, monkeypatch):
    import shutil

    import converters.tflite

    old = tmp_path / "tflite-fp32"
    shutil.copytree(fp32_artifacts["tflite"].path, old)
    before = {p.name: p.read_bytes() for p in old.iterdir()}

    def half_written(deploy, example, recipe, out):  # the disk fills up halfway through the flatbuffer
        (out / converters.tflite.MODEL_FILE).write_bytes(b"TFL3" + bytes(1000))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(converters.tflite, "write_model", half_written)
    with pytest.raises(UserError, match="conversion failed: OSError"):
        build_artifacts("tflite", "fp32", tmp_path, tiny_checkpoint, force=True)
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before  # --force replaces only with a finished artifact
    assert [p.name for p in tmp_path.iterdir()] == ["tflite-fp32"]  # and no temporary folder or lock is left


def test_per_axis_int8_gives_an_int8_table_back_exactly():
    from converters.tflite import _per_axis_int8

    rng = np.random.default_rng(0)
    scale = rng.uniform(0.001, 0.1, (40, 1)).astype(np.float32)
    codes = rng.integers(-127, 128, (40, 24)).astype(np.int8)
    codes[:, 0] = 127  # each row reaches full scale, as `Int8Tables` builds them
    table = codes * scale
    for matrix, axis in ((table, 0), (table.T.copy(), 1)):
        got_codes, got_scale, got_axis = _per_axis_int8(matrix)
        assert got_axis == axis and np.allclose(got_scale, scale.reshape(-1), rtol=1e-6, atol=0)
        assert np.array_equal(got_codes, codes if axis == 0 else codes.T)


def test_coreml_weight_only_int8_and_w8a8_run(tiny_checkpoint, tmp_path, int8_artifacts):
    (result,) = build_artifacts("coreml", "w8", tmp_path, tiny_checkpoint)
    assert read_manifest(result.path)["recipe"]["quantizer"].startswith("linear_quantize_weights")
    w8 = load_runner(result.path)
    assert "constexpr_affine_dequantize" in w8.backend.program.op_counts()
    assert result.parity_max_vertex_mm is not None and np.isfinite(result.parity_max_vertex_mm)
    w8a8 = load_runner(int8_artifacts["coreml"].path)
    assert {"quantize", "dequantize"} <= set(w8a8.backend.program.op_counts())
    assert np.isfinite(w8a8(np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)).vertices).all()


def test_coreml_all_w8a8_ships_every_weight_int8_and_no_debug_map(tiny_checkpoint, tmp_path):
    """A constant used twice (a graph level's adjacency, in both GCN layers) is annotated once by
    CoreMLQuantizer: its other use is int8 too; and coremltools' ExecuTorch debug-handle map,
    written beside a converted PT2E graph, does not ship (Core ML never reads it)."""
    import coremltools as ct
    from coremltools.optimize.coreml import get_weights_metadata

    (result,) = build_artifacts("coreml", "int8", tmp_path, tiny_checkpoint, int8_plan=Int8Plan(), calib_num=2)
    package = result.path / "model.mlpackage"
    assert not (package / "executorch_debug_handle_mapping.json").exists()
    weights = get_weights_metadata(ct.models.MLModel(str(package), skip_model_load=True), weight_threshold=1024)
    finest_adjacency = [w for w in weights.values() if w.val.shape == (416, 416)]
    assert finest_adjacency and {str(w.val.dtype) for w in weights.values()} <= {"int8", "uint8", "uint16"}, \
        {name: (w.val.shape, str(w.val.dtype)) for name, w in weights.items()}


def test_coreml_int8_activations_get_affine_grids(tiny_checkpoint, synth_train_root):
    """CoreMLQuantizer's symmetric config (the scheme its weights need) centres every uint8
    activation grid on zero; the converter gives each activation its own affine grid from a
    histogram, so one-signed tensors (SiLU, ReLU outputs) use all their codes. (What that buys
    shows on the reference model, README "What differs": all-W8A8 ΔMPJPE 5.53 -> 3.50 mm; on the
    tiny model the two graphs' errors are within their noise, either way by thread count.)"""
    from calibration.mixed_precision import calibrate
    from converters import coreml
    from lagchand_edge.checkpoint import load_checkpoint
    from lagchand_edge.model import DeployModel

    model = load_checkpoint(tiny_checkpoint)
    deployed = DeployModel(model, int8_embeddings=True).eval()
    calibration = select_calibration(synth_train_root, 8, split="train").images
    quantizers = {"affine": coreml.ptq_quantizer(Int8Plan()), "coremlquantizer": coreml.quantizer.coreml_quantizer()}
    graphs = {name: calibrate(coreml.quantizable_graph(deployed, calibration[:1]), quantizer, calibration) for name, quantizer in quantizers.items()}
    quantize = torch.ops.quantized_decomposed.quantize_per_tensor.default
    grids = {name: {str(node.args[0]): (float(node.args[1]), int(node.args[2])) for node in graph.graph.nodes  # tensor: (step, zero point)
                    if node.target == quantize and node.args[5] == torch.uint8} for name, graph in graphs.items()}
    own, affine = grids["coremlquantizer"], grids["affine"]
    assert {zero_point for _, zero_point in own.values()} == {0, 128}  # centred on 0, but for the fixed [0, 1) grids of its sigmoids
    one_signed = [tensor for tensor, (_, zero_point) in affine.items() if zero_point < 32 and own.get(tensor, (0, 0))[1] == 128]
    assert len(one_signed) > len(affine) // 8, (len(one_signed), len(affine))  # the SiLUs' outputs (their floor is -0.28)
    steps = [affine[tensor][0] / own[tensor][0] for tensor in one_signed]
    assert np.median(steps) < 0.75, np.median(steps)  # finer steps: 0.63 measured (a SiLU's grid spans [-0.28, max], not [-max, max])


def test_bad_requests_leave_nothing_behind(tiny_checkpoint, tmp_path, fp32_artifacts):
    with pytest.raises(UserError, match="choose one of fp32, int8"):
        targets_for("executorch", "fp16")
    with pytest.raises(UserError, match="unknown target"):
        targets_for("onnx", "fp32")
    with pytest.raises(UserError, match="already exists"):
        build_artifacts("executorch", "fp32", fp32_artifacts["executorch"].path.parent, tiny_checkpoint)
    with pytest.raises(UserError, match="only apply to --precision int8"):
        build_artifacts("tflite", "fp32", tmp_path, tiny_checkpoint, int8_plan=Int8Plan(keep_float=("model.graph",)))
    with pytest.raises(UserError, match="no module named 'model.nowhere'"):
        build_artifacts("tflite", "int8", tmp_path, tiny_checkpoint, int8_plan=Int8Plan(keep_float=("model.nowhere",)), calib_num=2)
    assert list(tmp_path.iterdir()) == []  # no partial artifact, no temporary folder


def test_parity_is_skipped_only_for_a_runtime_this_machine_lacks(tiny_checkpoint, fp32_artifacts, tmp_path, monkeypatch):
    import converters
    import converters.executorch

    built = fp32_artifacts["executorch"].path / "model.pte"  # built (lazily) before the patches below

    def converted(model, example, recipe, out_dir):  # the fixture's conversion stands in for a fresh one
        shutil.copy(built, out_dir / "model.pte")
        return {}

    monkeypatch.setattr(converters.executorch, "write_model", converted)
    installed = converters.missing_extra
    monkeypatch.setattr(converters, "missing_extra",  # the runtime absent, the converter present
                        lambda target, packages: "no runtime here" if packages == target.RUN_PACKAGES else installed(target, packages))
    (result,) = build_artifacts("executorch", "fp32", tmp_path, tiny_checkpoint)
    assert result.parity_max_vertex_mm is None and result.parity_note == "skipped: no runtime here"
    assert (result.path / "model.pte").read_bytes() == built.read_bytes()  # written all the same


def test_int8_plan_is_recorded_and_keep_float_keeps_weights_float(tiny_checkpoint, synth_root, tmp_path, int8_artifacts):
    recorded = read_manifest(int8_artifacts["executorch"].path)["recipe"]["int8_plan"]
    assert recorded == get_target("executorch").INT8_PLAN.to_dict()
    assert read_manifest(int8_artifacts["tflite"].path)["recipe"]["int8_plan"] == get_target("tflite").INT8_PLAN.to_dict()
    assert read_manifest(int8_artifacts["coreml"].path)["recipe"]["int8_plan"] == DEFAULT_INT8_PLAN.to_dict()
    kept = Int8Plan(static=("model",), keep_float=("model.graph",))
    # one ExecuTorch conversion (the slowest kind) checks both the plan and the observer choice
    for target, observer in (("executorch", "minmax"), ("tflite", None)):
        (result,) = build_artifacts(target, "int8", tmp_path / target, tiny_checkpoint, calib_data=synth_root, calib_num=4, int8_plan=kept,
                                    observer=observer)
        assert result.size_bytes > int8_artifacts[target].size_bytes, target  # the graph's weights stay fp32
        assert result.parity_max_vertex_mm <= KEPT_GRAPH_PARITY_MM, target
    assert "minmax observer" in read_manifest(tmp_path / "executorch" / "executorch-int8")["recipe"]["quantizer"]
    assert "histogram observer" in read_manifest(int8_artifacts["executorch"].path)["recipe"]["quantizer"]


def _activation_ranges(model: Path) -> list[tuple[str, float]]:
    """Each op's name with the int8 range (scale x 255) of its per-tensor int8 outputs, in graph order."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model))
    tensors = {d["index"]: d for d in interpreter.get_tensor_details()}
    return [(op["op_name"], float(tensors[t]["quantization_parameters"]["scales"][0]) * 255)
            for op in interpreter._get_ops_details() for t in op["outputs"]
            if tensors[t]["dtype"] == np.int8 and len(tensors[t]["quantization_parameters"]["scales"]) == 1]


def test_tflite_histogram_observer_sets_its_own_ranges_on_the_same_graph(tiny_checkpoint, synth_root, tmp_path, int8_artifacts):
    """`--observer histogram` on LiteRT: the min-max default's int8 graph, op for op (tensors that share
    one range keep sharing one: no requantization), each activation's range from the histogram."""
    (result,) = build_artifacts("tflite", "int8", tmp_path, tiny_checkpoint, calib_data=synth_root, calib_num=8, observer="histogram")
    assert "histogram observer" in read_manifest(result.path)["recipe"]["quantizer"]
    assert "minmax observer" in read_manifest(int8_artifacts["tflite"].path)["recipe"]["quantizer"]
    assert result.parity_max_vertex_mm <= INT8_PARITY_MM
    histogram = _activation_ranges(result.path / "model.tflite")
    minmax = _activation_ranges(int8_artifacts["tflite"].path / "model.tflite")
    assert [op for op, _ in histogram] == [op for op, _ in minmax] and len(histogram) > 20  # the same int8 ops
    moved = [abs(h - m) > 0.02 * m for (op, h), (_, m) in zip(histogram, minmax, strict=True) if op != "LOGISTIC"]  # a sigmoid's grid is fixed
    assert sum(moved) > len(moved) // 2


def test_int8_activation_observer_is_refused_where_it_does_not_apply(tiny_checkpoint, tmp_path):
    with pytest.raises(UserError, match="--observer takes"):
        build_artifacts("coreml", "int8", tmp_path / "x", tiny_checkpoint, observer="percentile")
    with pytest.raises(UserError, match="--observer applies to --precision int8 on --target executorch or tflite or coreml"):
        build_artifacts("all", "fp16", tmp_path / "y", tiny_checkpoint, observer="minmax")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_an_artifact_of_the_bundled_checkpoint_carries_its_model_card():
    from lagchand_edge.artifact import io_spec
    from lagchand_edge.checkpoint import bundled_checkpoint
    from lagchand_edge.io import file_sha256
    from lagchand_edge.model_card import artifact_card

    shapes = {"image": (1, 3, 256, 256), "vertices": (1, 2, 780, 3), "joints": (1, 2, 21, 3), "camera": (1, 2, 3)}
    manifest = {"target": "tflite", "precision": "fp16", "file": "model.tflite", "size_bytes": 4_880_000, "sha256": "ab" * 32,
                "created": "2026-12-02T00:00:00+00:00", "recipe": {"quantizer": "float_casting"}, "calibration": None, **io_spec(shapes),
                "source": {"checkpoint": str(bundled_checkpoint()), "config": "reference", "checkpoint_sha256": file_sha256(bundled_checkpoint())}}
    card = artifact_card(manifest, 0.03, "4 images")
    assert "### Bundled checkpoint: `lagchand_reference.safetensors`" in card and "0.0300 mm (4 images)" in card
    assert "within 0.1 mm at fp16" in card and "\n# " not in card.split("\n", 1)[1]  # one top heading: the source card's are demoted


def _tflite_op_names(path) -> list[str]:
    from ai_edge_litert.tools import flatbuffer_utils

    flat = flatbuffer_utils.read_model(str(path))
    return [flatbuffer_utils.opcode_to_name(flat, op.opcodeIndex) for op in flat.subgraphs[0].operators]


def test_app_facing_inputs_nhwc_for_litert_and_an_image_for_coreml(tiny_checkpoint, synth_root, fp32_artifacts, tmp_path):
    """#23: `--input nhwc` gives LiteRT an HWC input (and drops the graph's input transpose);
    `--input image` gives CoreML an ImageType of 0-255 pixels. Both compute the model's function."""
    from ai_edge_litert.interpreter import Interpreter
    from coremltools.proto import Model_pb2

    (nhwc,) = build_artifacts("tflite", "fp32", tmp_path / "nhwc", tiny_checkpoint, calib_data=synth_root, calib_num=2, input_form="nhwc")
    (image,) = build_artifacts("coreml", "fp32", tmp_path / "image", tiny_checkpoint, calib_data=synth_root, calib_num=2, input_form="image")
    images = select_calibration(synth_root, 2, seed=9).images.numpy()
    pixels = np.round(images * 255) / 255  # what a camera gives: the image input is 8-bit
    vertices = _reference(tiny_checkpoint, pixels)[0].numpy()

    assert nhwc.parity_max_vertex_mm <= FP32_PARITY_MM
    interpreter = Interpreter(model_path=str(nhwc.path / "model.tflite"))
    interpreter.allocate_tensors()
    (detail,) = interpreter.get_input_details()
    assert tuple(detail["shape"]) == (1, 256, 256, 3)
    interpreter.set_tensor(detail["index"], np.ascontiguousarray(pixels[:1].transpose(0, 2, 3, 1), dtype=np.float32))
    interpreter.invoke()
    by_app = interpreter.get_tensor(next(d for d in interpreter.get_output_details() if d["name"] == "vertices")["index"])
    assert np.abs(by_app - vertices[:1]).max() * 1000 <= FP32_PARITY_MM  # an app feeding HWC frames directly
    assert np.abs(load_runner(nhwc.path)(pixels).vertices - vertices).max() * 1000 <= FP32_PARITY_MM  # our tools feed NCHW
    manifest = read_manifest(nhwc.path)
    assert manifest["inputs"][0]["shape"] == [1, 256, 256, 3] and manifest["inputs"][0]["layout"].startswith("NHWC")
    from apps.predict.model import open_artifact

    app_model, _, _ = open_artifact(nhwc.path)  # the torch-free app takes NCHW crops too
    assert np.abs(app_model(pixels[:1].astype(np.float32))[0] - vertices[:1]).max() * 1000 <= FP32_PARITY_MM
    transposes = [_tflite_op_names(a / "model.tflite").count("TRANSPOSE") for a in (nhwc.path, fp32_artifacts["tflite"].path)]
    assert transposes[0] < transposes[1]

    spec = Model_pb2.Model()
    spec.ParseFromString((image.path / "model.mlpackage" / "Data" / "com.apple.CoreML" / "model.mlmodel").read_bytes())
    (described,) = spec.description.input
    assert described.type.WhichOneof("Type") == "imageType" and described.type.imageType.colorSpace == Model_pb2.ImageFeatureType.RGB
    assert read_manifest(image.path)["inputs"][0]["dtype"] == "image"
    got = load_runner(image.path)(pixels).vertices
    assert _relative_error(got, vertices) <= 1e-4

    for form, target in (("nhwc", "coreml"), ("image", "all"), ("bgr", "tflite")):
        with pytest.raises(UserError, match="--input"):
            build_artifacts(target, "fp32", tmp_path / form, tiny_checkpoint, input_form=form)
