"""What a conversion is asked to do, shared by every target."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch-free at import: the predict app runs LiteRT artifacts on devices without torch
    import torch


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

    def to_dict(self) -> dict:
        return {"static_w8a8": list(self.static), "float_activations": list(self.float_activations), "keep_float": list(self.keep_float)}

    @classmethod
    def from_dict(cls, plan: dict) -> Int8Plan:
        return cls(tuple(plan["static_w8a8"]), tuple(plan["float_activations"]), tuple(plan["keep_float"]))


@dataclass
class Recipe:
    """Precision plus what int8 needs: calibration images (N, 3, 256, 256) and the int8 plan (PTQ), or a QAT graph."""

    precision: str
    calibration: torch.Tensor | None = None
    plan: Int8Plan = field(default_factory=Int8Plan)
    observer: str | None = None  # executorch int8 activation observer: histogram (default) or minmax
    qat: torch.fx.GraphModule | None = None  # a QAT-trained prepared graph (dynamic batch): converted instead of calibrating
    metadata: dict = field(default_factory=dict)  # what the model file says about itself, where its format has room

    @property
    def quantized(self) -> bool:
        return self.precision in ("int8", "w8")


OBSERVERS = ("histogram", "minmax")


class ConversionError(Exception):
    """A converter failed; the message names the failing op when the converter reports one."""
