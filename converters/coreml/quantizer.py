"""CoreML's int8 quantizers: ExecuTorch's CoreMLQuantizer annotations, with affine activations.

coremltools' quantizer config has one scheme for weights and activations. Symmetric, as Core
ML's int8 weights want, it also centres every uint8 activation grid on zero, so a one-signed
tensor (a SiLU's, a ReLU's output) spends half of its 256 codes on values it never takes; and
its observers are min-max kinds only. `AffineActivations` keeps CoreMLQuantizer's choice of
what to quantize and its weights, and gives the activations per-tensor affine uint8 grids from
the observer asked for (README, "What differs").
"""

from __future__ import annotations

import torch
from torchao.quantization.pt2e.quantizer import QuantizationSpec, Quantizer

from calibration.mixed_precision import ANNOTATION, ScopedQuantizer
from calibration.plans import Int8Plan
from converters.recipe import ConversionError

OBSERVERS = ("histogram", "minmax")  # PTQ's activation ranges (the first is the default)


class AffineActivations(Quantizer):
    """`inner`'s annotations with every uint8 activation spec replaced by one per-tensor affine
    spec observed by `observer` (one spec object: PT2E shares an observer between a producer and
    a consumer whose specs are equal, instead of requantizing between them)."""

    def __init__(self, inner: Quantizer, observer) -> None:
        super().__init__()
        self.inner = inner
        self.spec = QuantizationSpec(dtype=torch.uint8, quant_min=0, quant_max=255, qscheme=torch.per_tensor_affine,
                                     observer_or_fake_quant_ctr=observer)

    def _affine(self, spec):
        return self.spec if isinstance(spec, QuantizationSpec) and spec.dtype == torch.uint8 else spec

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        model = self.inner.annotate(model)
        for node in model.graph.nodes:
            annotation = node.meta.get(ANNOTATION)
            if annotation is not None:
                annotation.input_qspec_map = {arg: self._affine(spec) for arg, spec in annotation.input_qspec_map.items()}
                annotation.output_qspec = self._affine(annotation.output_qspec)
        return model

    def validate(self, model: torch.fx.GraphModule) -> None:
        self.inner.validate(model)


def coreml_quantizer() -> Quantizer:
    """ExecuTorch's CoreMLQuantizer as configured here: symmetric per-channel int8 weights, and
    its own (zero-centred, min-max) uint8 activation specs, which `AffineActivations` replaces."""
    from coremltools.optimize.torch.quantization.quantization_config import LinearQuantizerConfig, QuantizationScheme
    from executorch.backends.apple.coreml.quantizer import CoreMLQuantizer

    from converters.coreml.patterns import trace_patterns_once

    trace_patterns_once()
    config = LinearQuantizerConfig.from_dict({"global_config": {
        "quantization_scheme": QuantizationScheme.symmetric, "activation_dtype": torch.quint8,
        "weight_dtype": torch.qint8, "weight_per_channel": True}})
    return CoreMLQuantizer(config)


def _affine_w8a8(plan: Int8Plan, activations) -> Quantizer:
    """CoreMLQuantizer's W8A8, activations observed by `activations` on affine uint8 grids, inside
    the plan's static modules."""
    return ScopedQuantizer(AffineActivations(coreml_quantizer(), activations), exclude=plan.not_static, only=plan.static)


def ptq_quantizer(plan: Int8Plan, observer: str = OBSERVERS[0]) -> Quantizer:
    """PTQ: activation ranges by a histogram (clips rare outliers to minimise the rounding error)
    or plain min-max (the full range). QAT starts from this calibration."""
    from torchao.quantization.pt2e import HistogramObserver, MinMaxObserver

    observers = {"histogram": HistogramObserver, "minmax": MinMaxObserver}
    if observer not in observers:
        raise ConversionError(f"unknown observer {observer!r}; choose {' or '.join(OBSERVERS)}")
    return _affine_w8a8(plan, observers[observer].with_args(dtype=torch.quint8, qscheme=torch.per_tensor_affine))


def qat_quantizer(plan: Int8Plan) -> Quantizer:
    """QAT: the same grids as fake quantizers (moving-average min-max while they observe)."""
    from torchao.quantization.pt2e import FakeQuantize, MovingAverageMinMaxObserver

    return _affine_w8a8(plan, FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, dtype=torch.quint8,
                                                          qscheme=torch.per_tensor_affine, quant_min=0, quant_max=255))
