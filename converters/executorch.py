"""ExecuTorch `.pte` with the XNNPACK delegate: fp32, and int8 by PT2E (XNNPACKQuantizer,
per-channel symmetric weights, static activations)."""

from __future__ import annotations

import copy
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torchao.quantization.pt2e.quantizer import Quantizer

from calibration.mixed_precision import ANNOTATION, ScopedQuantizer, calibrate, combine
from calibration.plans import DEFAULT_INT8_PLAN, Int8Plan
from converters.recipe import ConversionError, Recipe

NAME = "executorch"
PRECISIONS = ("fp32", "int8")
MODEL_FILE = "model.pte"
EXTRA = "executorch"  # pip install 'lagchand-edge[executorch]'
CONVERT_PACKAGES = ("executorch", "torchao")  # import names: what converting needs
RUN_PACKAGES = ("executorch",)  # what running an artifact needs
#: XNNPACK realises float activations as dynamic int8 (it has no weight-only kernels); the 3D
#: head (195 weights, mm-scale outputs) does not survive that and stays float here (the
#: README's "The int8 plan" has the measurements).
INT8_PLAN = replace(DEFAULT_INT8_PLAN, keep_float=("model.graph.head",))
#: int8 activation observers `--observer` chooses from (the first is the default)
OBSERVERS = ("histogram", "minmax")
INPUTS = ("nchw",)  # input forms (lagchand_edge.artifact.INPUT_FORMS) it offers
LATENCY_UNAVAILABLE = None
QAT_UNAVAILABLE = None
QAT_STUDENT = None  # QAT trains this target's own int8 graph


def quantization_config(observer: str = "histogram"):
    """XNNPACK's int8 scheme (per-channel symmetric weights, static per-tensor activations).

    Activations are observed with a histogram (XNNPACK's default: clips outliers to minimise
    quantization error) or plain min-max (keeps the full range).
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e import MinMaxObserver

    config = get_symmetric_quantization_config(is_per_channel=True)
    if observer == "histogram":
        return config
    if observer != "minmax":
        raise ConversionError(f"unknown observer {observer!r}; choose histogram or minmax")
    activation = replace(config.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
    return replace(config, input_activation=activation, output_activation=activation)


def quantize_pt2e(module: torch.nn.Module, calibration: torch.Tensor, plan: Int8Plan, observer: str = "histogram") -> torch.nn.Module:
    """PT2E int8 (XNNPACKQuantizer) of an exported graph module by `plan`, calibrated on `calibration`.

    The plan's static modules get W8A8; its float_activations modules XNNPACK's dynamic scheme
    (int8 weights, activations quantized per call: XNNPACK has no weight-only kernels).
    """
    parts = [ptq_quantizer(plan, observer)]
    if plan.float_activations:
        parts.append(_dynamic_quantizer(plan))
    return calibrate(module, combine(parts), calibration)


def ptq_graph(model: torch.nn.Module, example: torch.Tensor, calibration: torch.Tensor, plan: Int8Plan,
              observer: str = "histogram") -> torch.nn.Module:
    """The int8 graph this target's PTQ lowers: `model` exported at `example`'s shape and quantized by `plan`."""
    return quantize_pt2e(quantizable_graph(model, example), calibration, plan, observer)


def _dynamic_quantizer(plan: Int8Plan):
    """XNNPACK's dynamic scheme (per-channel symmetric int8 weights, activations quantized per call)
    inside the plan's float_activations modules."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    dynamic = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True))
    return ScopedQuantizer(dynamic, exclude=plan.keep_float, only=plan.float_activations)


def qat_int8_graph(student: torch.fx.GraphModule, plan: Int8Plan, example: torch.Tensor) -> torch.fx.GraphModule:
    """A QAT-trained graph as int8: its fake quantizers converted, and the plan's float_activations
    modules, which trained in float, given XNNPACK's dynamic int8 as `convert` gives them (LiteRT's
    converter does the same): their weights round from the trained float ones instead of shipping
    as fp32 (README, "Quantization-aware training"). The converted graph is exported again first:
    the dynamic quantizer's annotators read shapes its dequantize nodes do not carry."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    converted = convert_pt2e(student)
    if not plan.float_activations:
        return converted
    return calibrate(torch.export.export(converted, (example,)).module(), _dynamic_quantizer(plan), example)


def ptq_quantizer(plan: Int8Plan, observer: str = "histogram"):
    """XNNPACKQuantizer's static W8A8 inside the plan's static modules (QAT starts from its calibration)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer

    config = quantization_config(observer)
    static = combine([Int8SiLU(config), XNNPACKQuantizer().set_global(config)])
    return ScopedQuantizer(static, exclude=plan.not_static, only=plan.static)


def qat_quantizer(plan: Int8Plan):
    """XNNPACKQuantizer's scheme with fake quantization, static W8A8 inside the plan's static modules."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    config = get_symmetric_quantization_config(is_per_channel=True, is_qat=True)
    static = combine([Int8SiLU(config), XNNPACKQuantizer().set_global(config)])
    return ScopedQuantizer(static, exclude=plan.not_static, only=plan.static)


class Int8SiLU(Quantizer):
    """Annotates each SiLU's sigmoid and product (`_silu_as_sigmoid_product`) for XNNPACK's int8
    kernels; XNNPACKQuantizer leaves sigmoids float. The sigmoid's output is on the fixed grid
    its kernel requires (scale 1/256, zero point -128: [0, 1) in 256 steps) and the product
    reads it on that grid (its own observer there would add a requantizing `Convert`).
    `_partitioner` lets the delegate take the int8 sigmoid."""

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        from torchao.quantization.pt2e.quantizer import FixedQParamsQuantizationSpec, QuantizationAnnotation, SharedQuantizationSpec

        unit = FixedQParamsQuantizationSpec(dtype=torch.int8, scale=1 / 256, zero_point=-128, quant_min=-128, quant_max=127,
                                            qscheme=torch.per_tensor_affine)
        activation = self.config.input_activation
        for sigmoid in model.graph.nodes:
            if sigmoid.target != torch.ops.aten.sigmoid.default or ANNOTATION in sigmoid.meta:
                continue
            x = sigmoid.args[0]
            sigmoid.meta[ANNOTATION] = QuantizationAnnotation(input_qspec_map={x: activation}, output_qspec=unit, _annotated=True)
            for product in sigmoid.users:
                if product.target == torch.ops.aten.mul.Tensor and set(product.args) == {x, sigmoid} and ANNOTATION not in product.meta:
                    product.meta[ANNOTATION] = QuantizationAnnotation(
                        input_qspec_map={x: activation, sigmoid: SharedQuantizationSpec(sigmoid)},
                        output_qspec=self.config.output_activation, _annotated=True)
        return model

    def validate(self, model: torch.fx.GraphModule) -> None:
        pass


def _partitioner():
    """XNNPACK's partitioner, with sigmoid taken in int8 too (its config lists fp32 only in
    ExecuTorch 1.5.1, though the kernel and the serialisation take int8; `Int8SiLU`)."""
    from executorch.backends.xnnpack.partition.config import ALL_PARTITIONER_CONFIGS
    from executorch.backends.xnnpack.partition.config.generic_node_configs import SigmoidConfig
    from executorch.backends.xnnpack.partition.config.xnnpack_config import ConfigPrecisionType
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    class Int8SigmoidConfig(SigmoidConfig):
        def supported_precision_types(self) -> list:
            return [ConfigPrecisionType.FP32, ConfigPrecisionType.STATIC_QUANT]

    return XnnpackPartitioner(configs=[Int8SigmoidConfig if config is SigmoidConfig else config for config in ALL_PARTITIONER_CONFIGS])


def qat_scheme() -> str:
    return ("XNNPACKQuantizer (is_qat): per-channel symmetric int8 weights (moving-average min-max), static per-tensor int8 "
            "activations, their ranges from the PTQ histogram calibration")


def quantizable_graph(model: torch.nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """The graph PT2E quantizes: derived constants as parameters, nearest upsampling as copies,
    SiLU as its sigmoid and product."""
    exported = torch.export.export(_constants_as_parameters(model), (example,))
    return _silu_as_sigmoid_product(_nearest_upsampling_as_copies(exported.module()))


def _silu_as_sigmoid_product(module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Rewrite each SiLU as x * sigmoid(x), the ops ExecuTorch lowers it to anyway, before
    quantization rather than after: between int8 layers both then run int8 in XNNPACK (the
    sigmoid with its fixed output grid, `Int8SiLU`), where a SiLU left whole ran fp32 between
    a dequantize and a quantize `Convert`."""
    aten, graph = torch.ops.aten, module.graph
    for node in list(graph.nodes):
        if node.target != aten.silu.default:
            continue
        with graph.inserting_before(node):
            sigmoid = graph.call_function(aten.sigmoid.default, (node.args[0],))
            product = graph.call_function(aten.mul.Tensor, (node.args[0], sigmoid))
        sigmoid.meta, product.meta = dict(node.meta), dict(node.meta)  # module stack (plans scope by it), value
        node.replace_all_uses_with(product)
        graph.erase_node(node)
    graph.lint()
    module.recompile()
    return module


def _nearest_upsampling_as_copies(module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Rewrite 2x nearest upsampling (the heatmap module's) as stack + reshape pairs, the same
    values: XNNPACK takes no `upsample_nearest2d`, and its portable kernel with the dim-order
    copies around it was a large share of the int8 model's time (README, Measured). The rows are
    doubled from two separately widened copies: a stack of one tensor with itself lowers to a
    concatenation of one input, which XNNPACK's partitioner refuses (a portable kernel between
    two delegates)."""
    aten, graph = torch.ops.aten, module.graph
    for node in list(graph.nodes):
        if node.target != aten.upsample_nearest2d.vec or node.args[1] is not None or list(node.args[2]) != [2.0, 2.0]:
            continue
        x = node.args[0]
        _, c, h, w = x.meta["val"].shape
        with graph.inserting_before(node):
            pairs = [graph.call_function(aten.stack.default, ([x, x], -1)) for _ in range(2)]
            wide = [graph.call_function(aten.reshape.default, (pair, [-1, c, h, 2 * w])) for pair in pairs]
            tall = graph.call_function(aten.reshape.default, (graph.call_function(aten.stack.default, (wide, 3)), [-1, c, 2 * h, 2 * w]))
        node.replace_all_uses_with(tall)
        graph.erase_node(node)
    graph.lint()
    module.recompile()
    return module


def _layer_norm_as_xnnpack_ops(module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Rewrite each `layer_norm` as centre, square, mean, rsqrt and scale in forms XNNPACK takes:
    it has no layer norm, and the portable kernel split the graph into partitions with transposes
    and conversions at every seam. Every mean is a linear layer with weights 1/n, which XNNPACK
    runs on row-major data as it is: over the last dim one layer; over a whole sample (the
    encoder's token norms, over (P, N, d) at batch 1) one over the rows' d values and one over
    the P*N row means. XNNPACK's own mean takes only (H, W) of a channels-last 4-D tensor, and
    the form built on it (a 1x1 convolution with weights 1/C, then a global average pool) cost
    four transposes and two reduces per token norm, 72 of the int8 artifact's transposes; it is
    left for (C, H, W) norms of a batch above 1. Run after quantization: these ops stay fp32
    (int8 variances round to 0)."""
    aten, graph = torch.ops.aten, module.graph

    def call(op, *args):
        return graph.call_function(op, args)

    def average(n: int, weight_shape: tuple[int, ...]) -> torch.fx.Node:
        name = f"_mean_over_{'_'.join(map(str, weight_shape))}"
        if not hasattr(module, name):
            module.register_parameter(name, torch.nn.Parameter(torch.full(weight_shape, 1.0 / n), requires_grad=False))
        return graph.get_attr(name)

    def mean(t: torch.fx.Node, shape: list[int], full: list[int]) -> torch.fx.Node:
        """keepdim mean of `t` (shape `full`) over its last len(shape) dims"""
        if len(shape) == 1:
            return call(aten.linear.default, t, average(shape[0], (1, shape[0])))
        if math.prod(full) == math.prod(shape):  # one sample: the whole tensor; the (1, 1) mean broadcasts over it
            rows = math.prod(full[:-1])
            row_means = call(aten.linear.default, t, average(shape[-1], (1, shape[-1])))
            return call(aten.linear.default, call(aten.view.default, row_means, [1, rows]), average(rows, (1, rows)))
        return call(aten.mean.dim, call(aten.conv2d.default, t, average(shape[0], (1, shape[0], 1, 1))), [2, 3], True)

    for node in list(graph.nodes):
        if node.target != aten.layer_norm.default:
            continue
        x, shape, weight, bias, eps = (list(node.args) + [None, None, 1e-5])[:5]
        full = list(node.meta["val"].shape)  # the output's shape: an input from a PT2E dequantize has none
        if len(shape) != 1 and not (len(shape) == 3 and (len(full) == 4 or math.prod(full) == math.prod(shape))):
            continue
        with graph.inserting_before(node):
            centred = call(aten.sub.Tensor, x, mean(x, shape, full))
            variance = mean(call(aten.mul.Tensor, centred, centred), shape, full)
            out = call(aten.mul.Tensor, centred, call(aten.rsqrt.default, call(aten.add.Tensor, variance, eps)))
            if weight is not None:
                out = call(aten.mul.Tensor, out, weight)
            if bias is not None:
                out = call(aten.add.Tensor, out, bias)
        node.replace_all_uses_with(out)
        graph.erase_node(node)
    graph.lint()
    module.recompile()
    return module


def _int8_casts_as_dequantize(module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Rewrite each int8 -> fp32 cast (the graph's `Int8Tables` embeddings) as a dequantize with
    scale 1 and zero point 0, the same values: XNNPACK runs that as one of its `Convert`s inside
    the delegate, where ExecuTorch ran the cast as a portable `_to_dim_order_copy` on every call
    (six of them, 0.3 ms of the int8 model's 8). The codes stay int8 in the program."""
    aten, graph = torch.ops.aten, module.graph
    for node in list(graph.nodes):
        if node.target not in (aten.to.dtype, aten._to_copy.default) or node.meta["val"].dtype != torch.float32:
            continue
        source = node.args[0]
        if not isinstance(source, torch.fx.Node) or source.meta["val"].dtype != torch.int8:
            continue
        with graph.inserting_before(node):
            cast = graph.call_function(torch.ops.quantized_decomposed.dequantize_per_tensor.default, (source, 1.0, 0, -128, 127, torch.int8))
        cast.meta = dict(node.meta)
        node.replace_all_uses_with(cast)
        graph.erase_node(node)
    graph.lint()
    module.recompile()
    return module


def _constants_as_parameters(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose derived constant buffers (graph adjacency, regressors) are frozen parameters:
    PT2E then quantizes the adjacency like any linear weight and XNNPACK packs them in its
    delegate, where buffers were fed to it as fp32 inputs from the program's constant segment."""
    model = copy.deepcopy(model)
    for module in model.modules():
        for name in sorted(module._non_persistent_buffers_set):
            tensor = module._buffers[name]
            if tensor is not None and tensor.is_floating_point():
                del module._buffers[name]
                module._non_persistent_buffers_set.discard(name)
                module.register_parameter(name, torch.nn.Parameter(tensor, requires_grad=False))
    return model


def _without_provenance(exported: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """`exported` with its nodes' `from_node` provenance dropped. Every pass of the lowering
    deep-copies each node's provenance chain into the nodes it makes, so the chains that the
    export and quantization passes left make lowering slower (measured: fp32 74 -> 52 s, int8
    106 -> 92 s on the tiny config) and buy nothing here: the program computes the same outputs."""
    for node in exported.graph.nodes:
        node.meta.pop("from_node", None)
    return exported


def delegation_summary(edge_program) -> dict:
    """Which operators XNNPACK took and which fell back to portable kernels (the latency surprise)."""
    delegated, portable = 0, Counter()
    for node in edge_program.graph.nodes:
        if node.op != "call_function":
            continue
        name = str(getattr(node.target, "__name__", node.target))
        if "executorch_call_delegate" in name:
            delegated += 1
        elif not any(skip in name for skip in ("getitem", "alloc", "view_copy")):
            portable[name] += 1
    return {"delegate": "XnnpackBackend", "delegated_subgraphs": delegated, "portable_ops": dict(portable)}


def write_model(model: torch.nn.Module, example: torch.Tensor, recipe: Recipe, out_dir: Path) -> dict:
    from executorch.exir import to_edge_transform_and_lower

    if recipe.qat is not None:
        module = qat_int8_graph(recipe.qat, recipe.plan, example)
    elif recipe.precision == "int8":
        module = ptq_graph(model, example, recipe.calibration, recipe.plan, recipe.observer or "histogram")
    else:
        module = quantizable_graph(model, example)
    exported = torch.export.export(_int8_casts_as_dequantize(_layer_norm_as_xnnpack_ops(module)), (example,))
    edge = to_edge_transform_and_lower(_without_provenance(exported), partitioner=[_partitioner()])
    summary = delegation_summary(edge.exported_program())
    program = edge.to_executorch()
    (out_dir / MODEL_FILE).write_bytes(program.buffer)
    quantizer = (f"XNNPACKQuantizer: per-channel symmetric int8 weights; static activations ({recipe.observer or 'histogram'} observer), "
                 "dynamic per-call activations in the plan's float_activations modules")
    if recipe.qat is not None:
        quantizer = f"QAT, {qat_scheme()}" + ("; dynamic per-call activations and int8 weights rounded from the trained float "
                                              "ones in the plan's float_activations modules" if recipe.plan.float_activations else "")
    return {"delegation": summary, "quantizer": quantizer if recipe.quantized else None}


class Runner:
    """The ExecuTorch runtime (portable + XNNPACK kernels) on one .pte. Its thread pool is the
    process's: `threads` resizes it for every program."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        from executorch.runtime import Runtime

        if threads is not None:
            import executorch.extension.pybindings.portable_lib as portable

            portable._unsafe_reset_threadpool(threads)

        self.program = Runtime.get().load_program(str(path))
        self.method = self.program.load_method("forward")
        meta = self.method.metadata
        self.input_shapes = [tuple(meta.input_tensor_meta(i).sizes()) for i in range(meta.num_inputs())]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        outputs = self.method.execute([torch.from_numpy(np.ascontiguousarray(a)) for a in inputs])
        return [o.numpy() for o in outputs]


def open_runner(path: Path, threads: int | None = None) -> Runner:
    return Runner(path, threads)
