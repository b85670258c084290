"""What a conversion is asked to do, shared by every target."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from calibration.plans import Int8Plan

if TYPE_CHECKING:  # torch-free at import: the predict app runs LiteRT artifacts on devices without torch
    import torch


@dataclass
class Recipe:
    """Precision plus what int8 needs: calibration images (N, 3, 256, 256) and the int8 plan (PTQ), or a QAT graph."""

    precision: str
    calibration: torch.Tensor | None = None
    plan: Int8Plan = field(default_factory=Int8Plan)
    observer: str | None = None  # int8 activation observer, one of the target's OBSERVERS (None: its first)
    qat: torch.fx.GraphModule | None = None  # a QAT-trained prepared graph: converted instead of calibrating (LiteRT: its weights, calibrated)
    metadata: dict = field(default_factory=dict)  # what the model file says about itself, where its format has room
    input_form: str = "nchw"  # the input's form (lagchand_edge.artifact.INPUT_FORMS); the example and the model already follow it

    @property
    def quantized(self) -> bool:
        return self.precision in ("int8", "w8")


class ConversionError(Exception):
    """A converter failed; the message names the failing op when the converter reports one."""
