"""Mixed-precision int8: which modules run static W8A8, which keep float activations over int8
weights, which stay float — and a PT2E quantizer wrapper that holds a quantizer to a module scope.

Why a wrapper: PT2E quantizers annotate some ops (e.g. XNNPACKQuantizer's `cat`) wherever they
are, whatever module filter is set, so "keep this module float" silently leaked int8 into it.
`ScopedQuantizer` strips every annotation its inner quantizer placed outside the scope, and then
every spec inside it that shares its parameters with a tensor left unquantized (an `add` or
`reshape` just inside a scope, sharing with the output of a layer just outside it): `prepare_pt2e`
stopped at those with a KeyError naming the node.
"""

from __future__ import annotations

import torch
from torchao.quantization.pt2e.quantizer import DerivedQuantizationSpec, Quantizer, SharedQuantizationSpec

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
        _drop_dangling_shares(model)
        return model

    def validate(self, model: torch.fx.GraphModule) -> None:
        self.inner.validate(model)


def _quantized(edge_or_node) -> bool:
    """Whether an annotation gives this node's output, or this (producer, consumer) edge, a spec."""
    if isinstance(edge_or_node, torch.fx.Node):
        annotation = edge_or_node.meta.get(ANNOTATION)
        return annotation is not None and annotation.output_qspec is not None
    producer, consumer = edge_or_node
    annotation = consumer.meta.get(ANNOTATION)
    return annotation is not None and annotation.input_qspec_map.get(producer) is not None


def _dangling(spec) -> bool:
    if isinstance(spec, SharedQuantizationSpec):
        return not _quantized(spec.edge_or_node)
    return isinstance(spec, DerivedQuantizationSpec) and not all(_quantized(source) for source in spec.derived_from)


def _drop_dangling_shares(model: torch.fx.GraphModule) -> None:
    """Unset every spec that shares with (or derives from) an unquantized tensor, until none is
    left: that tensor stays float, and so does what would have shared its parameters."""
    changed = True
    while changed:
        changed = False
        for node in model.graph.nodes:
            annotation = node.meta.get(ANNOTATION)
            if annotation is None:
                continue
            for producer, spec in list(annotation.input_qspec_map.items()):
                if spec is not None and _dangling(spec):
                    annotation.input_qspec_map[producer], changed = None, True
            if annotation.output_qspec is not None and _dangling(annotation.output_qspec):
                annotation.output_qspec, changed = None, True


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
