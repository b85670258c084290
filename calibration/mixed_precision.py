"""Mixed-precision int8: which modules run static W8A8, which keep float activations over int8
weights, which stay float — and a PT2E quantizer wrapper that holds a quantizer to a module scope.

Why a wrapper: PT2E quantizers annotate some ops (e.g. XNNPACKQuantizer's `cat`) wherever they
are, whatever module filter is set, so "keep this module float" silently leaked int8 into it.
`ScopedQuantizer` strips every annotation its inner quantizer placed outside the scope.
"""

from __future__ import annotations

import torch
from torchao.quantization.pt2e.quantizer import Quantizer

from calibration.plans import Int8Plan
from converters.recipe import ConversionError

ANNOTATION = "quantization_annotation"


def check_module_names(model: torch.nn.Module, plan: Int8Plan) -> None:
    """Refuse a plan naming modules the model does not have (a typo would quietly quantize all)."""
    known = {name for name, _ in model.named_modules() if name}
    for name in plan.names:
        if name not in known:
            near = sorted(k for k in known if k.count(".") <= 2)[:6]
            raise ConversionError(f"no module named {name!r} in the model; e.g. {', '.join(near)}")


def _inside(node: torch.fx.Node, scopes: tuple[str, ...]) -> bool:
    stack = node.meta.get("nn_module_stack") or {}
    return any(path == scope or path.startswith(scope + ".") for path, _ in stack.values() for scope in scopes)


class ScopedQuantizer(Quantizer):
    """`inner` limited to modules under `only` (None: everywhere) and outside `exclude`.

    Annotations present before this quantizer ran (an earlier one in a `ComposableQuantizer`)
    are left alone.
    """

    def __init__(self, inner: Quantizer, exclude: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> None:
        super().__init__()
        self.inner, self.exclude, self.only = inner, tuple(exclude), only

    def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        earlier = {node for node in model.graph.nodes if ANNOTATION in node.meta}
        model = self.inner.annotate(model)
        for node in model.graph.nodes:
            if node in earlier:
                continue
            if _inside(node, self.exclude) or (self.only is not None and not _inside(node, self.only)):
                node.meta.pop(ANNOTATION, None)
        return model

    def validate(self, model: torch.fx.GraphModule) -> None:
        self.inner.validate(model)


def combine(quantizers: list[Quantizer]) -> Quantizer:
    from torchao.quantization.pt2e.quantizer.composable_quantizer import ComposableQuantizer

    return quantizers[0] if len(quantizers) == 1 else ComposableQuantizer(quantizers)


def calibrate(module: torch.nn.Module, quantizer: Quantizer, calibration: torch.Tensor) -> torch.nn.Module:
    """prepare_pt2e, run the calibration images one at a time (the static batch-1 shape), convert."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    prepared = prepare_pt2e(module, quantizer)
    with torch.no_grad():
        for image in calibration:
            prepared(image[None])
    return convert_pt2e(prepared)
