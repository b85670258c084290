"""CoreML `.mlpackage` (ML Program, iOS17): fp16 (CoreML's default compute precision), fp32,
W8 weight-only (`linear_quantize_weights`) and W8A8 (PT2E with ExecuTorch's torchao-based
CoreMLQuantizer, its activations given affine grids: `quantizer.py`; coremltools' own
CoreMLQuantizer import fails on torch 2.13) by the int8 plan:
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

from calibration.mixed_precision import calibrate
from calibration.plans import DEFAULT_INT8_PLAN, Int8Plan
from converters.coreml.quantizer import OBSERVERS, ptq_quantizer
from converters.coreml.quantizer import qat_quantizer as qat_quantizer  # the target interface's, used by QAT
from converters.recipe import ConversionError, Recipe
from lagchand_edge.model import OUTPUT_NAMES

NAME = "coreml"
PRECISIONS = ("fp16", "fp32", "w8", "int8")
MODEL_FILE = "model.mlpackage"
EXTRA = "coreml"  # pip install 'lagchand-edge[coreml]'
CONVERT_PACKAGES = ("coremltools", "torchao")  # import names: what converting needs
RUN_PACKAGES = ("coremltools",)  # Core ML on macOS; coreml-sim reads the program with coremltools' protobuf classes
INT8_PLAN = DEFAULT_INT8_PLAN
INPUTS = ("nchw", "image")  # image: an ImageType input, so that an iOS app passes a CVPixelBuffer
LATENCY_UNAVAILABLE = ("CoreML latency needs a Mac (MLModel.predict); coreml-sim is a reference interpreter, not a speed proxy "
                       "(its speed is in the drift report)")
QAT_UNAVAILABLE = None
QAT_STUDENT = None  # QAT trains this target's own int8 graph


def qat_scheme() -> str:
    return ("CoreMLQuantizer (executorch.backends.apple.coreml): per-channel symmetric int8 weights, static per-tensor affine "
            "uint8 activations (moving-average min-max fake quantization, their ranges from the PTQ calibration: histogram)")


def quantizable_graph(model: torch.nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """The graph PT2E quantizes: the exported model as it is."""
    return torch.export.export(model, (example,)).module()


def ptq_graph(model: torch.nn.Module, example: torch.Tensor, calibration: torch.Tensor, plan: Int8Plan,
              observer: str = OBSERVERS[0]) -> torch.nn.Module:
    """The int8 graph this target's PTQ converts: `model` exported at `example`'s shape, its plan's
    activations calibrated on `calibration`."""
    return calibrate(quantizable_graph(model, example), ptq_quantizer(plan, observer), calibration)


def _w8a8(model: torch.nn.Module, example: torch.Tensor, recipe: Recipe) -> torch.nn.Module:
    if recipe.qat is not None:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

        return convert_pt2e(recipe.qat)
    return ptq_graph(model, example, recipe.calibration, recipe.plan, recipe.observer or OBSERVERS[0])


def write_model(model: torch.nn.Module, example: torch.Tensor, recipe: Recipe, out_dir: Path) -> dict:
    import coremltools as ct

    if recipe.precision == "int8":
        model = _w8a8(model, example, recipe)
    precision = ct.precision.FLOAT32 if recipe.precision == "fp32" else ct.precision.FLOAT16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, (example,)).run_decompositions({})
        mlmodel = ct.convert(
            program,
            inputs=[_input(ct, recipe.input_form, tuple(example.shape))],
            outputs=[ct.TensorType(name=name) for name in OUTPUT_NAMES],
            minimum_deployment_target=ct.target.iOS17,
            compute_precision=precision,
        )
        if recipe.quantized:  # W8, and W8A8's weights left float (every use of a shared constant but the one annotated)
            from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

            mlmodel = linear_quantize_weights(mlmodel, OptimizationConfig(global_config=OpLinearQuantizerConfig(mode="linear_symmetric")))
    _describe(mlmodel, recipe.metadata)
    mlmodel.save(str(out_dir / MODEL_FILE))
    # coremltools writes ExecuTorch's debug-handle map beside a converted PT2E graph: a debugging aid
    # of ExecuTorch's CoreML delegate that Core ML never reads (README, "What differs")
    (out_dir / MODEL_FILE / "executorch_debug_handle_mapping.json").unlink(missing_ok=True)
    ptq = (f"CoreMLQuantizer W8A8 (executorch.backends.apple.coreml; affine uint8 activations, {recipe.observer or OBSERVERS[0]} ranges) "
           "outside the plan's float_activations and keep_float modules; linear_quantize_weights (linear_symmetric) on the weights left "
           "float, keep_float's included")
    quantizer = {"int8": f"QAT, {qat_scheme()}" if recipe.qat is not None else ptq, "w8": "linear_quantize_weights (linear_symmetric)"}
    return {"compute_precision": "fp32" if recipe.precision == "fp32" else "fp16", "quantizer": quantizer.get(recipe.precision)}


def _input(ct, form: str, shape: tuple[int, ...]):
    """A float tensor, or an RGB image whose 0-255 pixels the model scales by 1/255 itself."""
    if form == "image":
        return ct.ImageType(name="image", shape=shape, scale=1 / 255.0, color_layout=ct.colorlayout.RGB)
    return ct.TensorType(name="image", shape=shape)


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


class Runner:
    """`MLModel.predict` on macOS; the coreml-sim MIL interpreter elsewhere (`RUNTIME` says which).
    Float NCHW images in [0, 1] in; an ImageType model (`convert --input image`) gets them as
    0-255 pixels, as Core ML hands a pixel buffer to the program."""

    def __init__(self, path: Path, simulate: bool | None = None) -> None:
        simulate = platform.system() != "Darwin" if simulate is None else simulate
        self.RUNTIME = "coreml-sim" if simulate else "coreml"
        self.input_shapes = [(1, 3, 256, 256)]
        self.image_input = _has_image_input(Path(path))
        self.simulate = simulate
        if simulate:
            from converters.coreml.sim import MILProgram, UnsupportedProgram

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
        image = inputs[0]
        if self.image_input:
            image = np.clip(np.round(image * 255.0), 0, 255).astype(np.float32)
            if not self.simulate:  # Core ML itself takes a picture, not an array
                from PIL import Image

                image = Image.fromarray(image[0].transpose(1, 2, 0).astype(np.uint8))
        result = self.predict(image=image)
        return [np.asarray(result[name], dtype=np.float32) for name in OUTPUT_NAMES]


def _has_image_input(package: Path) -> bool:
    from coremltools.proto import Model_pb2
    from google.protobuf.message import DecodeError

    spec = Model_pb2.Model()
    try:
        spec.ParseFromString((package / "Data" / "com.apple.CoreML" / "model.mlmodel").read_bytes())
    except (OSError, DecodeError):
        return False  # the runner's own loading says what is wrong
    return any(i.type.WhichOneof("Type") == "imageType" for i in spec.description.input)


def open_runner(path: Path, threads: int | None = None) -> Runner:
    """Core ML picks its own compute units and threads; coreml-sim computes in torch, on `threads`."""
    runner = Runner(path)
    if threads is not None and runner.simulate:
        import torch

        torch.set_num_threads(threads)
    return runner
