"""CoreML `.mlpackage` (ML Program, iOS17): fp16 (CoreML's default compute precision), fp32,
W8 weight-only (`linear_quantize_weights`) and W8A8 (PT2E with ExecuTorch's torchao-based
CoreMLQuantizer; coremltools' own CoreMLQuantizer import fails on torch 2.13) by the int8 plan:
its float_activations and keep_float modules get int8 weights over fp16 activations (weight
compression has no module scope on an ML Program, so keep_float's weights are int8 here too).

Running uses Apple's runtime on macOS and the coreml-sim reference interpreter elsewhere.
"""

from __future__ import annotations

import platform
import warnings
from pathlib import Path

import numpy as np
import torch

from converters.mixed_precision import ScopedQuantizer, calibrate
from converters.recipe import ConversionError, Int8Plan, Recipe
from lagchand_edge.model import OUTPUT_NAMES

NAME = "coreml"
PRECISIONS = ("fp16", "fp32", "w8", "int8")
MODEL_FILE = "model.mlpackage"


def _quantizer(plan: Int8Plan):
    """ExecuTorch's CoreMLQuantizer (fake-quantize observers: one quantizer serves PTQ and QAT),
    symmetric per-channel int8 weights and uint8 activations, scoped to the plan's static modules."""
    from coremltools.optimize.torch.quantization.quantization_config import LinearQuantizerConfig, QuantizationScheme
    from executorch.backends.apple.coreml.quantizer import CoreMLQuantizer

    config = LinearQuantizerConfig.from_dict({"global_config": {
        "quantization_scheme": QuantizationScheme.symmetric, "activation_dtype": torch.quint8,
        "weight_dtype": torch.qint8, "weight_per_channel": True}})
    return ScopedQuantizer(CoreMLQuantizer(config), exclude=plan.not_static, only=plan.static)


def qat_quantizer(plan: Int8Plan):
    return _quantizer(plan)


def qat_scheme() -> str:
    return ("CoreMLQuantizer (executorch.backends.apple.coreml): per-channel symmetric int8 weights, static per-tensor uint8 "
            "activations (moving-average min-max fake quantization)")


def quantizable_graph(model: torch.nn.Module, example: torch.Tensor, dynamic_shapes=None) -> torch.fx.GraphModule:
    """The graph PT2E quantizes: the exported model as it is."""
    return torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes).module()


def _w8a8(model: torch.nn.Module, example: torch.Tensor, recipe: Recipe) -> torch.nn.Module:
    if recipe.qat is not None:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

        return convert_pt2e(recipe.qat)
    return calibrate(quantizable_graph(model, example), _quantizer(recipe.plan), recipe.calibration)


def convert(model: torch.nn.Module, example: torch.Tensor, recipe: Recipe, out_dir: Path) -> dict:
    import coremltools as ct

    if recipe.observer is not None:
        raise ConversionError("--observer applies to the executorch target; CoreML (coremltools LinearQuantizerConfig observers) uses its own")
    if recipe.precision == "int8":
        model = _w8a8(model, example, recipe)
    precision = ct.precision.FLOAT32 if recipe.precision == "fp32" else ct.precision.FLOAT16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, (example,)).run_decompositions({})
        mlmodel = ct.convert(
            program,
            inputs=[ct.TensorType(name="image", shape=tuple(example.shape))],
            outputs=[ct.TensorType(name=name) for name in OUTPUT_NAMES],
            minimum_deployment_target=ct.target.iOS17,
            compute_precision=precision,
        )
        if recipe.precision == "w8" or recipe.plan.float_activations:
            from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

            mlmodel = linear_quantize_weights(mlmodel, OptimizationConfig(global_config=OpLinearQuantizerConfig(mode="linear_symmetric")))
    _describe(mlmodel, recipe.metadata)
    mlmodel.save(str(out_dir / MODEL_FILE))
    ptq = ("CoreMLQuantizer W8A8 (executorch.backends.apple.coreml) outside the plan's float_activations and keep_float modules; "
           "linear_quantize_weights (linear_symmetric) on the weights left float, keep_float's included")
    quantizer = {"int8": f"QAT, {qat_scheme()}" if recipe.qat is not None else ptq, "w8": "linear_quantize_weights (linear_symmetric)"}
    return {"compute_precision": "fp32" if recipe.precision == "fp32" else "fp16", "quantizer": quantizer.get(recipe.precision)}


def _describe(mlmodel, metadata: dict) -> None:
    """Xcode's model page from the metadata: description, inputs and outputs explained, and every
    field as user-defined metadata (strings; lists and objects as JSON)."""
    import json

    if not metadata:
        return
    mlmodel.short_description = f"{metadata['model']}, {metadata['precision']}; {metadata['hand_axis']}"
    mlmodel.version = metadata["producer"]
    for spec in metadata["inputs"]:
        mlmodel.input_description[spec["name"]] = f"{spec['layout']} {spec['shape']} in {spec['range']}; {spec['normalisation']}"
    for spec in metadata["outputs"]:
        mlmodel.output_description[spec["name"]] = f"{spec['shape']}, {spec['units']}"
    for key, value in metadata.items():
        mlmodel.user_defined_metadata[key] = value if isinstance(value, str) else json.dumps(value)


def unavailable_reason() -> str | None:
    return None  # macOS: Core ML itself; elsewhere: the coreml-sim reference interpreter


class Runner:
    """`MLModel.predict` on macOS; the coreml-sim MIL interpreter elsewhere (`RUNTIME` says which)."""

    def __init__(self, path: Path, simulate: bool | None = None) -> None:
        simulate = platform.system() != "Darwin" if simulate is None else simulate
        self.RUNTIME = "coreml-sim" if simulate else "coreml"
        self.input_shapes = [(1, 3, 256, 256)]
        if simulate:
            from converters.coreml_sim import MILProgram, UnsupportedProgram

            try:
                self.program = MILProgram(path)
            except UnsupportedProgram as exc:
                raise ConversionError(str(exc)) from None
            self.predict = self.program
        else:
            import coremltools as ct

            model = ct.models.MLModel(str(path))
            self.predict = lambda **feeds: model.predict(feeds)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        result = self.predict(image=inputs[0])
        return [np.asarray(result[name], dtype=np.float32) for name in OUTPUT_NAMES]


def open_runner(path: Path) -> Runner:
    return Runner(path)
