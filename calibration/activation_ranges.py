"""Histogram activation ranges for LiteRT's static int8 (AI Edge Quantizer).

AI Edge Quantizer's activation range is not the calibration set's min and max: it is an
exponential moving average (factor 0.95) of each image's min and max, in calibration order, so
with 32 images the first weighs 20% and the range depends on the order. ExecuTorch's XNNPACK
quantizer observes activations with a histogram over all images and picks the range that
minimises the quantization error. `histogram_ranges` gives a LiteRT conversion that same
observer: the float `.tflite` runs on the calibration images with every tensor kept, each float
activation feeds a `HistogramObserver` set up as XNNPACK's (int8, per-tensor affine), and its
range replaces the moving-average one in AI Edge Quantizer's calibration result, which then
quantizes as before. Tensors that AI Edge Quantizer gave one shared range (a concatenation's
inputs and output) share the union of their histogram ranges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: XNNPACKQuantizer's activation observer settings (`get_symmetric_quantization_config`)
QUANT_MIN, QUANT_MAX, EPS = -128, 127, 2**-12


def histogram_ranges(model_path: Path, signature: str, samples: list[dict], ranges: dict) -> dict:
    """`ranges` (AI Edge Quantizer's `{tensor name: {"min", "max", ...}}`) with every per-tensor
    float activation's min and max replaced by a histogram observer's over `samples` (the
    signature's input dicts that calibrated it). Other entries are returned unchanged."""
    import torch
    from ai_edge_litert.interpreter import Interpreter
    from torchao.quantization.pt2e import HistogramObserver

    interpreter = Interpreter(model_path=str(model_path), experimental_preserve_all_tensors=True)
    runner = interpreter.get_signature_runner(signature)
    tensors = {d["name"]: d["index"] for d in interpreter.get_tensor_details() if d["dtype"] == np.float32}
    names = [name for name, qsv in ranges.items() if name in tensors and np.size(qsv.get("min", ())) == 1]
    observers = {name: HistogramObserver(dtype=torch.int8, qscheme=torch.per_tensor_affine, quant_min=QUANT_MIN, quant_max=QUANT_MAX,
                                         eps=EPS) for name in names}
    for sample in samples:
        runner(**sample)
        for name in names:
            observers[name](torch.from_numpy(np.array(interpreter.get_tensor(tensors[name]))))
    observed = {}
    for name in names:
        scale, zero_point = (float(v) for v in observers[name].calculate_qparams())
        observed[name] = ((QUANT_MIN - zero_point) * scale, (QUANT_MAX - zero_point) * scale)
    # tensors AI Edge Quantizer gave one range (a concatenation's inputs and output) keep one range,
    # the union of theirs, or it requantizes between them
    groups: dict[tuple[float, float], list[str]] = {}
    for name in names:
        groups.setdefault((np.asarray(ranges[name]["min"]).item(), np.asarray(ranges[name]["max"]).item()), []).append(name)
    result = dict(ranges)
    for group in groups.values():
        low, high = min(observed[name][0] for name in group), max(observed[name][1] for name in group)
        for name in group:
            shape = np.shape(ranges[name]["min"])
            result[name] = ranges[name] | {"min": np.full(shape, low, np.float32), "max": np.full(shape, high, np.float32)}
    return result
