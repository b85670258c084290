"""How to quantize, shared by every target: calibration sample selection (`select`), int8 plans
(`plans`), the scoped quantizer behind mixed precision (`mixed_precision`), per-layer
sensitivity (`sensitivity`) and quantization-aware training (`qat`).

Nothing is imported here: `plans` must stay torch-free for the predict app.
"""
