"""Load an ML Program (.mlpackage) and execute it op by op.

Precision: every tensor is stored in the dtype the spec declares for it (fp16 programs keep
fp16 tensors), and every op computes in float32 from those stored values, then rounds its
result to its declared dtype. So fp16 rounding and overflow (inf) happen after each op, as
they do on the device; within one op (a convolution's or a matmul's dot products) sums are
accumulated in float32, which is what Apple's GPU and Neural Engine are documented to do for
fp16 matrix work (wider accumulators). Results can still differ from Apple's runtime in the
last bits; this is a reference, not the Core ML runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from converters.coreml.sim.ops import OPS
from converters.coreml.sim.values import BlobFile, UnsupportedProgram, decode, numpy_dtype, shape_of, to_torch

_TORCH = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64,
          np.dtype(np.int8): torch.int8, np.dtype(np.uint8): torch.uint8, np.dtype(np.int16): torch.int16,
          np.dtype(np.int32): torch.int32, np.dtype(np.int64): torch.int64, np.dtype(np.bool_): torch.bool,
          np.dtype(np.uint16): torch.int64, np.dtype(np.uint32): torch.int64}


@dataclass
class Step:
    """One operation, resolved: its function, inputs (variable names or decoded constants), outputs."""

    type: str
    fn: object
    inputs: dict[str, list]  # param -> list of ("var", name) / ("value", tensor)
    list_params: set[str]
    outputs: list[tuple[str, torch.dtype | None]]


class MILProgram:
    """`MILProgram(path)(image=array)` -> {output name: np.ndarray}."""

    def __init__(self, package: Path) -> None:
        from coremltools.proto import Model_pb2

        package = Path(package)
        spec_path = package / "Data" / "com.apple.CoreML" / "model.mlmodel"
        if not spec_path.is_file():
            raise UnsupportedProgram(f"{package}: not an .mlpackage (no Data/com.apple.CoreML/model.mlmodel)")
        spec = Model_pb2.Model()
        spec.ParseFromString(spec_path.read_bytes())
        if spec.WhichOneof("Type") != "mlProgram":
            raise UnsupportedProgram(f"{package}: not an ML Program (a {spec.WhichOneof('Type')} model)")
        function = spec.mlProgram.functions["main"]
        block = function.block_specializations[function.opset]
        self.opset = function.opset
        self.inputs = {i.name: (numpy_dtype(i.type), shape_of(i.type)) for i in function.inputs}
        self.output_names = list(block.outputs)
        self.constants: dict[str, object] = {}
        self.steps: list[Step] = []
        self.counts: dict[str, int] = {}
        blobs = BlobFile(package / "Data" / "com.apple.CoreML" / "weights")
        for operation in block.operations:
            self._add(operation, blobs)

    def _add(self, operation, blobs: BlobFile) -> None:
        self.counts[operation.type] = self.counts.get(operation.type, 0) + 1
        if operation.type == "const":
            self.constants[operation.outputs[0].name] = self._stored(decode(operation.attributes["val"], blobs), operation.outputs[0])
            return
        if operation.type not in OPS:
            raise UnsupportedProgram(f"MIL op '{operation.type}' is not implemented by the coreml-sim interpreter")
        if operation.type.startswith("constexpr_"):  # weights decompressed once, at load time
            values = {k: decode(v, blobs) for k, v in operation.attributes.items() if k != "name"}
            self.constants[operation.outputs[0].name] = self._stored(OPS[operation.type](**values), operation.outputs[0])
            return
        inputs, list_params = {}, set()
        for param, argument in operation.inputs.items():
            bound = []
            for binding in argument.arguments:
                if binding.WhichOneof("binding") == "name":
                    bound.append(("var", binding.name))
                else:
                    bound.append(("value", decode(binding.value, blobs)))
            inputs[param] = bound
            if len(bound) > 1 or param == "values":
                list_params.add(param)
        outputs = [(o.name, _TORCH[numpy_dtype(o.type)] if o.type.WhichOneof("type") == "tensorType" else None) for o in operation.outputs]
        self.steps.append(Step(operation.type, OPS[operation.type], inputs, list_params, outputs))

    @staticmethod
    def _stored(value, output) -> object:
        if isinstance(value, torch.Tensor) and output.type.WhichOneof("type") == "tensorType":
            return value.to(_TORCH[numpy_dtype(output.type)])
        return value

    def __call__(self, **feeds: np.ndarray) -> dict[str, np.ndarray]:
        env: dict[str, object] = dict(self.constants)
        for name, (dtype, shape) in self.inputs.items():
            if name not in feeds:
                raise ValueError(f"missing input {name!r}")
            array = np.asarray(feeds[name])
            if tuple(array.shape) != shape:
                raise ValueError(f"input {name!r} has shape {tuple(array.shape)}, the program expects {shape}")
            env[name] = to_torch(array.astype(dtype))
        with torch.no_grad():
            for step in self.steps:
                args = {}
                for param, bound in step.inputs.items():
                    values = [env[ref] if kind == "var" else ref for kind, ref in bound]
                    args[param] = values if param in step.list_params else values[0]
                result = step.fn(**args)
                results = result if isinstance(result, list) else [result]
                for (name, dtype), value in zip(step.outputs, results, strict=True):
                    env[name] = value.to(dtype) if dtype is not None and isinstance(value, torch.Tensor) else value
        return {name: env[name].float().numpy() if env[name].is_floating_point() else env[name].numpy() for name in self.output_names}

    def op_counts(self) -> dict[str, int]:
        """Every op type in the program (const and constexpr ones included) and how often it appears."""
        return dict(self.counts)
