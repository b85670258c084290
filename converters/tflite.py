"""LiteRT `.tflite` through litert-torch: fp32, fp16 weights, int8 static.

Found on this stack: litert-torch's PT2E int8 path fails in its NHWC layout pass on this
model ("Attempting to convert non-NHWC compatible node to NHWC: dequantize_per_tensor"), so
fp16 and int8 go through Google's AI Edge Quantizer on the fp32 .tflite instead
(float_casting for fp16; for int8 static_wi8_ai8 with our calibration images, overridden per
module scope by the int8 plan). Its activation ranges are a moving average of each calibration
image's min and max; `--observer histogram` replaces them with a histogram observer's, as
ExecuTorch's XNNPACK quantizer calibrates (`calibration.activation_ranges`). The int8 model
keeps float32 inputs and outputs (the quantizer adds the quantize and dequantize ops); the
runner still quantizes and dequantizes from the tensor details, for foreign `.tflite` files
with int8 I/O.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch-free at import: `Runner` serves the predict app on devices without torch
    import torch

from calibration.activation_ranges import histogram_ranges
from calibration.plans import DEFAULT_INT8_PLAN, Int8Plan
from converters.recipe import ConversionError, Recipe

NAME = "tflite"
PRECISIONS = ("fp32", "fp16", "int8")
MODEL_FILE = "model.tflite"
EXTRA = "tflite"  # pip install 'lagchand-edge[tflite]'
CONVERT_PACKAGES = ("litert_torch", "ai_edge_quantizer", "ai_edge_litert")  # import names: what converting needs
RUN_PACKAGES = ("ai_edge_litert",)  # what running an artifact needs (the predict app on a device: this alone)
#: The outliers of the encoder's transformer stages (layers 2-4) cost accuracy in W8A8, with min-max
#: or histogram ranges, and static int8 there bought no time: they keep float activations here
#: (measured: README, "The int8 plan").
INT8_PLAN = replace(DEFAULT_INT8_PLAN, float_activations=("model.encoder.layers.2", "model.encoder.layers.3", "model.encoder.layers.4",
                                                          "model.graph"))
#: int8 activation observers `--observer` chooses from (the first is the default): AI Edge Quantizer's
#: own (a moving average of each image's min and max), or a histogram as ExecuTorch's (no consistent
#: gain on the bundled checkpoint: README, "The int8 plan")
OBSERVERS = ("minmax", "histogram")
INPUTS = ("nchw", "nhwc")  # nhwc: camera frames as HWC, and one input transpose fewer in the graph
LATENCY_UNAVAILABLE = None
QAT_UNAVAILABLE = None
#: QAT for LiteRT trains ExecuTorch's graph under XNNPACK's scheme, which is AI Edge Quantizer's
#: static_wi8_ai8: symmetric per-channel int8 weights on the same grid (scale max|w| / 127, codes in
#: [-127, 127], the same output channels) and per-tensor affine int8 activations. litert-torch's own
#: PT2E path, which could carry trained scales, fails on this model (module docstring). `convert
#: --qat` takes the trained weights and calibrates the activations again
QAT_STUDENT = "executorch"
FP16_RECIPE = [{"regex": ".*", "operation": "*", "algorithm_key": "float_casting",
                "op_config": {"weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"}, "compute_precision": "FLOAT",
                              "explicit_dequantize": True}}]


def qat_scheme() -> str:
    from converters import get_target

    return (f"{get_target(QAT_STUDENT).qat_scheme()}; its weights carried into the float .tflite as fake-quantized values, which AI Edge "
            "Quantizer's static_wi8_ai8 quantizes to the same int8 codes, its activations calibrated with histogram ranges")


def write_model(model: torch.nn.Module, example: torch.Tensor, recipe: Recipe, out_dir: Path) -> dict:
    import litert_torch

    from lagchand_edge.model.deploy import explicit_norms

    if recipe.qat is not None:  # the trained weights, then AI Edge Quantizer's int8 of them as of any float model
        from calibration.qat import qat_adapted_model  # calibration imports converters: not at module level

        model, recipe = qat_adapted_model(recipe.qat, model), replace(recipe, observer="histogram")

    float_path = out_dir / (MODEL_FILE if recipe.precision == "fp32" else "float.tflite")
    with contextlib.redirect_stdout(io.StringIO()):  # layer norms as means: LiteRT lowers layer_norm through flattening reshapes
        litert_torch.convert(explicit_norms(model), (example,)).export(str(float_path))
    if recipe.precision == "fp32":
        with _rewrite(float_path) as flat:
            _name_tensors_by_module(flat, model)
            _name_io_and_describe(flat, recipe.metadata)
        return {"converter": "litert_torch.convert"}
    from ai_edge_quantizer import quantizer

    observer = recipe.observer or OBSERVERS[0]
    if observer not in OBSERVERS:
        raise ConversionError(f"unknown observer {observer!r}; choose {' or '.join(OBSERVERS)}")
    q = quantizer.Quantizer(str(float_path))
    # AI Edge Quantizer prints a size summary to stdout (which would corrupt `--json`) and tqdm bars to stderr
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        if recipe.precision == "fp16":
            q.load_quantization_recipe(FP16_RECIPE)
            result = q.quantize()
        else:
            q.load_quantization_recipe(int8_recipe(model, recipe.plan))
            signature, input_name = _signature(float_path)
            images = recipe.calibration.permute(0, 2, 3, 1) if recipe.input_form == "nhwc" else recipe.calibration
            samples = [{input_name: image[None].numpy().astype(np.float32)} for image in images]
            ranges = q.calibrate({signature: samples}, num_threads=min(os.cpu_count() or 1, 2))
            if observer == "histogram":
                ranges = histogram_ranges(float_path, signature, samples, ranges)
            result = q.quantize(ranges)
        result.export_model(str(out_dir / MODEL_FILE), overwrite=True)
    float_path.unlink()
    with _rewrite(out_dir / MODEL_FILE) as flat:
        _name_tensors_by_module(flat, model)
        _name_io_and_describe(flat, recipe.metadata)
        tables = _int8_added_constants(flat) if recipe.precision == "int8" else 0
    runner = Runner(out_dir / MODEL_FILE)
    io_spec = {d["name"]: {"dtype": np.dtype(d["dtype"]).name, "scale": float(d["quantization"][0]), "zero_point": int(d["quantization"][1])}
          for d in runner.inputs + runner.outputs}
    int8 = (f"ai_edge_quantizer: static_wi8_ai8 ({observer} observer) in static modules; in float_activations dynamic_wi8_afp32 for fully "
            "connected layers and convolutions, weight_only_wi8_afp32 for other weighted ops; no_quantize in keep_float")
    if recipe.qat is not None:
        int8 = f"QAT, {qat_scheme()}"
    return {"converter": "litert_torch.convert + ai_edge_quantizer", "io_quantization": io_spec, "int8_added_constants": tables,
            "quantizer": "ai_edge_quantizer float_casting fp16" if recipe.precision == "fp16" else int8}


def _scope_parts(root: torch.nn.Module, path: str) -> list[str]:
    """litert-torch's name of module `path`: each tensor is named by the chain of called modules,
    `<module.Class>_<attribute>` joined by '/' (ModuleLists are never called, so they add no part)."""
    import torch

    parts, module = [], root
    for attribute in path.split("."):
        module = module[int(attribute)] if attribute.isdigit() else getattr(module, attribute)
        if not isinstance(module, (torch.nn.ModuleList, torch.nn.ModuleDict)):
            parts.append(f"{type(module).__module__}.{type(module).__qualname__}_{attribute}")
    return parts


def scope_regex(root: torch.nn.Module, path: str) -> str:
    """The LiteRT tensor-name scope of module `path` (AI Edge Quantizer recipes select by it); a
    ModuleList's is any of its members' (it adds no name part, so its own would be its parent's)."""
    import torch

    module = root.get_submodule(path)
    if isinstance(module, (torch.nn.ModuleList, torch.nn.ModuleDict)):
        members = [scope_regex(root, f"{path}.{child}") for child, _ in module.named_children()]
        return "(?:" + "|".join(members) + ")" if members else "(?!)"  # an empty list: no tensor, not every one
    return "/".join(re.escape(part) for part in _scope_parts(root, path)) + "(/|;|$)"


#: LiteRT ops that stay float in static scopes: LiteRT 2.3's XNNPACK delegate takes none of them in
#: int8, and the builtin int8 kernels took 15.3 ms (27 batch matmuls) and 3.9 ms (12 softmaxes) of an
#: all-W8A8 model's 22 ms, against 0.8 ms for both in float, while 30 int8 rsqrts cut the delegate
#: into 33 partitions (ExecuTorch's XNNPACK keeps all three fp32 too). Float batch matmuls also keep
#: the graph levels' hand mix exact: AEQ quantizes a batch matmul's constant as a right operand, per
#: channel along its last axis, which for the mix's constant left operand is the contraction axis,
#: and the int8 result was garbage (README, "What differs")
FLOAT_IN_STATIC_OPS = ("BATCH_MATMUL", "SOFTMAX", "RSQRT")
#: LiteRT ops that run dynamic int8 (int8 weights, input quantized per call) in float_activations scopes
DYNAMIC_INT8_OPS = ("FULLY_CONNECTED", "CONV_2D")


def int8_recipe(model: torch.nn.Module, plan: Int8Plan) -> list[dict]:
    """AI Edge Quantizer recipe for `plan`, one entry per module scope (the last match wins, so
    deeper names come later); ops under no scope are not quantized."""
    from ai_edge_quantizer import recipe as aeq_recipe

    static, weight_only = aeq_recipe.static_wi8_ai8()[0], aeq_recipe.weight_only_wi8_afp32()[0]
    dynamic = aeq_recipe.dynamic_wi8_afp32()[0]
    # a name that is the whole network (the deploy wrapper's only child) covers its I/O tensors too
    whole = [name for name, _ in model.named_children()]
    entries = []
    for name in plan.static:
        scope = ".*" if [name] == whole else scope_regex(model, name)
        entries += [static | {"regex": scope}] + [_no_quantize(scope, op) for op in FLOAT_IN_STATIC_OPS]
    # AEQ skips a matching entry its op cannot take (weight-only on an op without weights), so a
    # float_activations scope first says no_quantize: its weightless ops must not stay static.
    # Its fully connected layers and convolutions then run dynamic int8 (activations quantized per
    # call, XNNPACK's qd8 kernels, as ExecuTorch's float activations do); the other weighted ops
    # keep int8 weights dequantized to float (a batch matmul with a constant operand has no dynamic kernel)
    for name in plan.float_activations:
        scope = scope_regex(model, name)
        entries += [_no_quantize(scope), weight_only | {"regex": scope}]
        entries += [dynamic | {"regex": scope, "operation": op} for op in DYNAMIC_INT8_OPS]
    return entries + [_no_quantize(scope_regex(model, name)) for name in plan.keep_float]


def _no_quantize(regex: str, operation: str = "*") -> dict:
    # a distinct key: AEQ keeps one entry per (regex, operation), a later one replacing the earlier
    return {"regex": f"(?:{regex})", "operation": operation, "algorithm_key": "no_quantize", "op_config": {}}


@contextlib.contextmanager
def _rewrite(path: Path):
    """The `.tflite` at `path` as a flatbuffer object (schema ModelT), written back on exit: one
    read and one write for every post-conversion edit."""
    from ai_edge_litert.tools import flatbuffer_utils

    flat = flatbuffer_utils.read_model(str(path))
    yield flat
    flatbuffer_utils.write_model(flat, str(path))


def _name_tensors_by_module(flat, root: torch.nn.Module) -> None:
    """Name each op's output `<module path>/t<index>` (the deepest module it came from, e.g.
    model.graph.blocks.2.attention.attn) and constants `t<index>`; inputs, outputs and signatures
    keep their names. litert-torch's names are full class chains (half a megabyte); these are a
    tenth of that and say where each op sits, for the profiler's time per module and for Netron."""
    modules: dict[tuple[str, ...], str] = {}
    for path, _ in root.named_modules():
        if path:  # a ModuleList has its parent's parts: the parent, named first, keeps them
            modules.setdefault(tuple(_scope_parts(root, path)), path)
    for subgraph in flat.subgraphs:
        keep = set(subgraph.inputs) | set(subgraph.outputs)
        produced = {int(t) for op in subgraph.operators for t in op.outputs}
        for index, tensor in enumerate(subgraph.tensors):
            if index in keep:
                continue
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name or "")
            parts = name.split(";")[0].split("/")[1:]  # the first part is the converted (root) module
            owner = next((modules[tuple(parts[:n])] for n in range(len(parts), 0, -1) if tuple(parts[:n]) in modules), None)
            tensor.name = f"{owner}/t{index}" if owner and index in produced else f"t{index}"


#: The model's own metadata entry (JSON), beside any other entries in the file.
METADATA_NAME = "lagchand_edge"


def _name_io_and_describe(flat, metadata: dict) -> None:
    """Inputs, outputs and the signature named as the manifest names them (`image`; `vertices`,
    `joints`, `camera`), not litert-torch's `args_0` / `output_0..2`, and `metadata` as a JSON
    metadata entry, so an app (or Netron) needs nothing but the file."""
    import json

    from ai_edge_litert import schema_py_generated as schema

    from lagchand_edge.model import OUTPUT_NAMES

    graph = flat.subgraphs[0]
    names = dict(zip(graph.inputs, ["image"], strict=True)) | dict(zip(graph.outputs, OUTPUT_NAMES, strict=True))
    for index, name in names.items():
        graph.tensors[index].name = name
    for signature in flat.signatureDefs or []:
        for mapping in [*signature.inputs, *signature.outputs]:
            mapping.name = names[mapping.tensorIndex]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata).encode(), np.uint8)
    flat.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(flat.buffers) - 1
    flat.metadata = [*(flat.metadata or []), entry]


def read_metadata(path: Path) -> dict | None:
    """The JSON metadata a lagchand-edge `.tflite` carries (None for other models)."""
    import json

    from ai_edge_litert.tools import flatbuffer_utils

    flat = flatbuffer_utils.read_model(str(path))
    for entry in flat.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == METADATA_NAME:
            return json.loads(bytes(flat.buffers[entry.buffer].data).decode())
    return None


def _per_axis_int8(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Symmetric int8 codes of a 2-D constant with one scale per row or per column, whichever
    reconstructs it better (an `Int8Tables` table gets its own codes back, in either orientation)."""
    best = None
    for axis in (0, 1):
        scale = np.abs(matrix).max(axis=1 - axis, keepdims=True).clip(1e-12) / 127
        codes = np.round(matrix / scale).astype(np.int8)
        error = np.abs(codes * scale - matrix).max()
        if best is None or error < best[3]:
            best = (codes, scale.reshape(-1).astype(np.float32), axis, error)
    return best[:3]


def _int8_added_constants(flat, min_elements: int = 1024) -> int:
    """Store the large fp32 constants that ADD ops add to activations as int8; returns how many.

    These are the graph's embedding tables: the model ships them as int8 (`Int8Tables`), but
    litert-torch folds `codes * scale` back into fp32 (merged with a neighbouring bias where one
    is) and AI Edge Quantizer quantizes no ADD operand. Each becomes int8 codes (`_per_axis_int8`)
    feeding a DEQUANTIZE and a RESHAPE that produce the original tensor.
    """
    from ai_edge_litert import schema_py_generated as schema

    graph = flat.subgraphs[0]
    references = Counter(tensor.buffer for sub in flat.subgraphs for tensor in sub.tensors)
    codes_of = {max(code.builtinCode, code.deprecatedBuiltinCode): index for index, code in enumerate(flat.operatorCodes)}

    def opcode(code: int, version: int) -> int:
        if code not in codes_of:
            entry = schema.OperatorCodeT()
            entry.builtinCode, entry.deprecatedBuiltinCode, entry.version = code, code, version
            flat.operatorCodes.append(entry)
            codes_of[code] = len(flat.operatorCodes) - 1
        return codes_of[code]

    def add_tensor(shape, dtype: int, name: str, data: np.ndarray | None = None, quantization=None) -> int:
        tensor = schema.TensorT()
        tensor.shape, tensor.type, tensor.name, tensor.quantization, tensor.buffer = np.asarray(shape, np.int32), dtype, name, quantization, 0
        if data is not None:
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            flat.buffers.append(buffer)
            tensor.buffer = len(flat.buffers) - 1
        graph.tensors.append(tensor)
        return len(graph.tensors) - 1

    add = codes_of.get(schema.BuiltinOperator.ADD)
    candidates = sorted({i for op in graph.operators if op.opcodeIndex == add for i in op.inputs if i >= 0})
    new_ops = []
    for index in candidates:
        tensor = graph.tensors[index]
        data = flat.buffers[tensor.buffer].data
        if tensor.type != schema.TensorType.FLOAT32 or data is None or len(data) < 4 * min_elements:
            continue
        if int(tensor.shape[-1]) == 3:  # 3-D points (the mean hands the decoder offsets): output coordinates, kept exact
            continue
        values = np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.float32)
        codes, scale, axis = _per_axis_int8(values.reshape(-1, int(tensor.shape[-1])))
        quantization = schema.QuantizationParametersT()
        quantization.scale, quantization.zeroPoint, quantization.quantizedDimension = scale, np.zeros(len(scale), np.int64), axis
        codes_index = add_tensor(codes.shape, schema.TensorType.INT8, f"t{index}_codes", codes, quantization)
        float_index = add_tensor(codes.shape, schema.TensorType.FLOAT32, f"t{index}_dequantized")
        shape_index = add_tensor([len(tensor.shape)], schema.TensorType.INT32, f"t{index}_shape", np.asarray(tensor.shape, np.int32))
        dequantize, reshape = schema.OperatorT(), schema.OperatorT()
        dequantize.opcodeIndex, dequantize.inputs, dequantize.outputs = opcode(schema.BuiltinOperator.DEQUANTIZE, 4), [codes_index], [float_index]
        reshape.opcodeIndex, reshape.inputs, reshape.outputs = opcode(schema.BuiltinOperator.RESHAPE, 1), [float_index, shape_index], [index]
        new_ops += [dequantize, reshape]
        if references[tensor.buffer] == 1:
            flat.buffers[tensor.buffer].data = None
        tensor.buffer = 0
    graph.operators = new_ops + graph.operators  # their inputs are constants: they may run first
    return len(new_ops) // 2


def _signature(path: Path) -> tuple[str, str]:
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_path=str(path)).get_signature_list()
    name = next(iter(signatures))
    return name, signatures[name]["inputs"][0]


class Runner:
    """The LiteRT interpreter (XNNPACK by default). Float NCHW in, float out, whatever the model's
    I/O: int8 tensors are quantized and dequantized here, an NHWC input gets its images transposed."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()
        self.input_shapes = [tuple(d["shape"]) for d in self.inputs]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        for detail, value in zip(self.inputs, inputs, strict=True):
            if value.ndim == 4 and value.shape[1] == 3 and tuple(detail["shape"][1:]) == (*value.shape[2:], 3):
                value = value.transpose(0, 2, 3, 1)  # an NHWC model (convert --input nhwc) given NCHW images
            scale, zero = detail["quantization"]
            if np.issubdtype(detail["dtype"], np.integer) and scale:
                info = np.iinfo(detail["dtype"])
                value = np.clip(np.round(value / scale + zero), info.min, info.max)
            self.interpreter.set_tensor(detail["index"], np.ascontiguousarray(value, dtype=detail["dtype"]))
        self.interpreter.invoke()
        results = []
        for detail in self.outputs:
            value = self.interpreter.get_tensor(detail["index"])
            scale, zero = detail["quantization"]
            if np.issubdtype(value.dtype, np.integer) and scale:
                value = (value.astype(np.float32) - zero) * scale
            results.append(value.astype(np.float32))
        return results


def open_runner(path: Path, threads: int | None = None) -> Runner:
    return Runner(path, threads)
