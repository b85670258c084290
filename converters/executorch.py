"""ExecuTorch `.pte` with the XNNPACK delegate: fp32, and int8 by PT2E (XNNPACKQuantizer,
per-channel symmetric weights, static activations)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from converters.recipe import ConversionError, Recipe

NAME = "executorch"
PRECISIONS = ("fp32", "int8")
MODEL_FILE = "model.pte"


def quantization_config(observer: str = "histogram"):
    """XNNPACK's int8 scheme (per-channel symmetric weights, static per-tensor activations).

    Activations are observed with a histogram (XNNPACK's default: clips outliers to minimise
    quantization error) or plain min-max (keeps the full range).
    """
    from dataclasses import replace

    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e import MinMaxObserver

    config = get_symmetric_quantization_config(is_per_channel=True)
    if observer == "histogram":
        return config
    if observer != "minmax":
        raise ConversionError(f"unknown observer {observer!r}; choose histogram or minmax")
    activation = replace(config.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
    return replace(config, input_activation=activation, output_activation=activation)


def quantize_pt2e(module: torch.nn.Module, calibration: torch.Tensor, keep_float: tuple[str, ...] = (),
                  only: tuple[str, ...] | None = None, named: torch.nn.Module | None = None, observer: str = "histogram") -> torch.nn.Module:
    """PT2E int8 (XNNPACKQuantizer) of an exported graph module, calibrated on `calibration`.

    `keep_float` names modules left in float; `only` (instead) names the only modules quantized.
    `named` is the eager model whose module names those refer to (default: `module`).
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    config = quantization_config(observer)
    quantizer = XNNPACKQuantizer()
    if only is not None:
        for name in only:
            quantizer.set_module_name(name, config)
    elif keep_float:
        # XNNPACKQuantizer cannot exempt a module (a None config asserts), so quantize the
        # smallest set of module subtrees that covers everything except the kept ones.
        for name in _covering_modules(named if named is not None else module, set(keep_float)):
            quantizer.set_module_name(name, config)
    else:
        quantizer.set_global(config)
    prepared = prepare_pt2e(module, quantizer)
    with torch.no_grad():
        for image in calibration:
            prepared(image[None])
    return convert_pt2e(prepared)


def _quantize(model: torch.nn.Module, example: torch.Tensor, recipe: Recipe) -> torch.nn.Module:
    return quantize_pt2e(torch.export.export(model, (example,)).module(), recipe.calibration, recipe.keep_float, named=model,
                         observer=recipe.observer or "histogram")


def _covering_modules(model: torch.nn.Module, kept: set[str]) -> list[str]:
    known = {name for name, _ in model.named_modules()}
    unknown = sorted(kept - known)
    if unknown:
        raise ConversionError(f"--keep-float: no module named {unknown[0]!r}; e.g. {', '.join(sorted(known - {''})[:6])}")

    def cover(module: torch.nn.Module, prefix: str) -> list[str]:
        if prefix in kept:
            return []
        if prefix and not any(k.startswith(prefix + ".") for k in kept):
            return [prefix]
        return [n for child, sub in module.named_children() for n in cover(sub, f"{prefix}.{child}" if prefix else child)]

    return cover(model, "")


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


def convert(model: torch.nn.Module, example: torch.Tensor, recipe: Recipe, out_dir: Path) -> dict:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    if recipe.precision == "int8":
        model = _quantize(model, example, recipe)
    exported = torch.export.export(model, (example,))
    edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    summary = delegation_summary(edge.exported_program())
    program = edge.to_executorch()
    (out_dir / MODEL_FILE).write_bytes(program.buffer)
    quantizer = f"XNNPACKQuantizer(per-channel symmetric weights, static activations, {recipe.observer or 'histogram'} observer)"
    return {"delegation": summary, "quantizer": quantizer if recipe.quantized else None}


def unavailable_reason() -> str | None:
    return None


class Runner:
    """The ExecuTorch runtime (portable + XNNPACK kernels) on one .pte."""

    def __init__(self, path: Path) -> None:
        from executorch.runtime import Runtime

        self.program = Runtime.get().load_program(str(path))
        self.method = self.program.load_method("forward")
        meta = self.method.metadata
        self.input_shapes = [tuple(meta.input_tensor_meta(i).sizes()) for i in range(meta.num_inputs())]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        outputs = self.method.execute([torch.from_numpy(np.ascontiguousarray(a)) for a in inputs])
        return [o.numpy() for o in outputs]


def open_runner(path: Path) -> Runner:
    return Runner(path)
