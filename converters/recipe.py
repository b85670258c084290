"""What a conversion is asked to do, shared by every target."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Recipe:
    """Precision plus what PTQ needs: calibration images (N, 3, 256, 256) and modules kept float."""

    precision: str
    calibration: torch.Tensor | None = None
    keep_float: tuple[str, ...] = field(default_factory=tuple)
    observer: str | None = None  # executorch int8 activation observer: histogram (default) or minmax

    @property
    def quantized(self) -> bool:
        return self.precision in ("int8", "w8")


OBSERVERS = ("histogram", "minmax")


class ConversionError(Exception):
    """A converter failed; the message names the failing op when the converter reports one."""
