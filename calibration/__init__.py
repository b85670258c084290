"""Calibration for PTQ: deterministic, stratified sample selection shared by every target."""

from calibration.select import CalibrationSet, select_calibration

__all__ = ["CalibrationSet", "select_calibration"]
