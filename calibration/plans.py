"""Int8 plans: which modules of `DeployModel` get which int8 scheme. Torch-free (the predict
app reads manifests on devices without torch)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Int8Plan:
    """Module names (as `DeployModel` names them) by the int8 scheme they get. A name covers its
    submodules; float_activations carve out of static, keep_float out of both. Ops under no
    listed name stay float."""

    static: tuple[str, ...] = ("model",)  # int8 weights, int8 activations (W8A8)
    float_activations: tuple[str, ...] = ()  # int8 weights, float activations
    keep_float: tuple[str, ...] = ()  # float weights and activations

    @property
    def not_static(self) -> tuple[str, ...]:
        return self.float_activations + self.keep_float

    @property
    def names(self) -> tuple[str, ...]:
        return self.static + self.not_static

    def describe(self) -> str:
        """One line for a console: each scheme and its modules."""
        parts = (("W8A8", self.static), ("float activations", self.float_activations), ("float", self.keep_float))
        return "; ".join(f"{label} {', '.join(names)}" for label, names in parts if names) or "every module float"

    def to_dict(self) -> dict:
        return {"static_w8a8": list(self.static), "float_activations": list(self.float_activations), "keep_float": list(self.keep_float)}

    @classmethod
    def from_dict(cls, plan: dict) -> Int8Plan:
        return cls(tuple(plan["static_w8a8"]), tuple(plan["float_activations"]), tuple(plan["keep_float"]))


#: LAGCHand's int8 plan, from `drift --per-layer` and the README's measurements: encoder and
#: heatmap module W8A8; the graph decoder's activations carry mm-scale geometry that per-tensor
#: int8 destroys, so it keeps float activations over int8 weights; the glue
#: between modules (normalisation, joint regression, root subtraction) stays float. Each target
#: adapts it to its runtime (`converters.<target>.INT8_PLAN`).
DEFAULT_INT8_PLAN = Int8Plan(static=("model.encoder", "model.compact", "model.camera_head"), float_activations=("model.graph",))
