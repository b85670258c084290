"""MIL operations (iOS17 opset, the semantics of coremltools' op definitions) in torch CPU.

Every op receives its inputs by MIL parameter name (tensors, Python strings or lists of
tensors) and returns a tensor or a list of tensors; the program rounds each result to the
dtype the spec declares for it. Floating-point inputs are computed in float32 (see program.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from converters.coreml.sim.values import DTYPE_STRINGS, UnsupportedProgram

OPS: dict[str, Callable[..., object]] = {}


def op(*names: str):
    def register(fn):
        for name in names:
            OPS[name] = fn
        return fn

    return register


def fl(x: torch.Tensor) -> torch.Tensor:
    """Compute precision: float32 for floating inputs (integers and bools unchanged)."""
    return x.float() if x.is_floating_point() else x


def ints(x) -> list[int]:
    return [int(v) for v in torch.as_tensor(x).reshape(-1).tolist()]


def scalar(x, default=None):
    if x is None:
        return default
    return x if isinstance(x, str) else torch.as_tensor(x).reshape(-1)[0].item()


def _axis_shape(param: torch.Tensor, axis: int | None, rank: int) -> torch.Tensor:
    """A per-axis parameter (scale, zero point) shaped to broadcast along `axis` of a rank-`rank` tensor."""
    if param.dim() == 0 or axis is None:
        return param
    shape = [1] * rank
    shape[axis % rank] = -1
    return param.reshape(shape)


# ------------------------------------------------------------------------- element-wise


_BINARY = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "real_div": torch.div, "maximum": torch.maximum, "minimum": torch.minimum,
           "pow": torch.pow, "floor_div": torch.floor_divide, "equal": torch.eq, "not_equal": torch.ne, "less": torch.lt,
           "less_equal": torch.le, "greater": torch.gt, "greater_equal": torch.ge}


def _binary(fn):
    return lambda x, y, **_: fn(fl(x), fl(y))


for _name, _fn in _BINARY.items():
    OPS[_name] = _binary(_fn)

_UNARY = {"relu": torch.relu, "sigmoid": torch.sigmoid, "silu": F.silu, "tanh": torch.tanh, "exp": torch.exp, "log": torch.log,
          "sqrt": torch.sqrt, "abs": torch.abs, "square": torch.square, "floor": torch.floor, "ceil": torch.ceil, "sign": torch.sign,
          "erf": torch.erf, "sin": torch.sin, "cos": torch.cos, "identity": lambda t: t, "relu6": lambda t: torch.clamp(t, 0, 6)}


def _unary(fn):
    return lambda x, **_: fn(fl(x))


for _name, _fn in _UNARY.items():
    OPS[_name] = _unary(_fn)


@op("rsqrt")
def rsqrt(x, epsilon=None, **_):
    return torch.rsqrt(fl(x) + scalar(epsilon, 1e-12))


@op("inverse")
def inverse(x, epsilon=None, **_):
    return 1.0 / (fl(x) + scalar(epsilon, 1e-4))


@op("clip")
def clip(x, alpha, beta, **_):
    return torch.clamp(fl(x), scalar(alpha), scalar(beta))


@op("gelu")
def gelu(x, mode=None, **_):
    x = fl(x)
    mode = scalar(mode, "EXACT")
    if mode == "EXACT":
        return F.gelu(x)
    if mode == "TANH_APPROXIMATION":
        return F.gelu(x, approximate="tanh")
    if mode == "SIGMOID_APPROXIMATION":
        return x * torch.sigmoid(1.702 * x)
    raise UnsupportedProgram(f"gelu mode {mode}")


@op("softmax")
def softmax(x, axis=None, **_):
    return torch.softmax(fl(x), dim=scalar(axis, -1))


@op("cast")
def cast(x, dtype, **_):
    target = DTYPE_STRINGS.get(scalar(dtype))
    if target is None:
        raise UnsupportedProgram(f"cast to {scalar(dtype)}")
    out = fl(x)
    return torch.round(out) if target().dtype.kind in "iu" and out.is_floating_point() else out


@op("select")
def select(cond, a, b, **_):
    return torch.where(cond.bool(), fl(a), fl(b))


# ------------------------------------------------------------------------- linear algebra


@op("linear")
def linear(x, weight, bias=None, **_):
    return F.linear(fl(x), fl(weight), None if bias is None else fl(bias))


@op("matmul")
def matmul(x, y, transpose_x=None, transpose_y=None, **_):
    x, y = fl(x), fl(y)
    if scalar(transpose_x, False):
        x = x.transpose(-1, -2)
    if scalar(transpose_y, False):
        y = y.transpose(-1, -2)
    return torch.matmul(x, y)


def _same_padding(size: int, kernel: int, stride: int, dilation: int, lower: bool) -> tuple[int, int]:
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    small, big = total // 2, total - total // 2
    return (big, small) if lower else (small, big)


def _spatial_padding(x, kernel, strides, dilations, pad_type, pad) -> list[tuple[int, int]]:
    """(before, after) per spatial dim for MIL's pad_type: valid, same, same_lower or custom."""
    spatial = x.shape[2:]
    pad_type = scalar(pad_type, "valid")
    if pad_type == "valid":
        return [(0, 0)] * len(spatial)
    if pad_type == "custom":
        values = ints(pad) if pad is not None else [0] * 2 * len(spatial)
        return [(values[2 * i], values[2 * i + 1]) for i in range(len(spatial))]
    if pad_type in ("same", "same_lower"):
        return [_same_padding(s, k, st, d, pad_type == "same_lower") for s, k, st, d in zip(spatial, kernel, strides, dilations, strict=True)]
    raise UnsupportedProgram(f"pad_type {pad_type}")


def _pad_spatial(x, padding, value=0.0):
    flat = [v for before, after in reversed(padding) for v in (before, after)]
    return F.pad(x, flat, value=value) if any(flat) else x


@op("conv")
def conv(x, weight, bias=None, strides=None, pad_type=None, pad=None, dilations=None, groups=None, **_):
    x, weight = fl(x), fl(weight)
    dims = weight.dim() - 2
    strides = ints(strides) if strides is not None else [1] * dims
    dilations = ints(dilations) if dilations is not None else [1] * dims
    padding = _spatial_padding(x, weight.shape[2:], strides, dilations, pad_type, pad)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}.get(dims)
    if fn is None:
        raise UnsupportedProgram(f"conv with {dims} spatial dims")
    return fn(_pad_spatial(x, padding), weight, None if bias is None else fl(bias), strides, 0, dilations, int(scalar(groups, 1)))


@op("batch_norm")
def batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=None, **_):
    x = fl(x)
    shape = [1, -1] + [1] * (x.dim() - 2)
    out = (x - fl(mean).reshape(shape)) / torch.sqrt(fl(variance).reshape(shape) + scalar(epsilon, 1e-5))
    if gamma is not None:
        out = out * fl(gamma).reshape(shape)
    if beta is not None:
        out = out + fl(beta).reshape(shape)
    return out


@op("layer_norm")
def layer_norm(x, axes=None, gamma=None, beta=None, epsilon=None, **_):
    x = fl(x)
    axes = [a % x.dim() for a in ints(axes)] if axes is not None else list(range(x.dim()))
    mean = x.mean(dim=axes, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=axes, keepdim=True)
    out = (x - mean) / torch.sqrt(var + scalar(epsilon, 1e-5))
    shape = [x.shape[d] if d in axes else 1 for d in range(x.dim())]
    if gamma is not None:
        out = out * fl(gamma).reshape(shape)
    if beta is not None:
        out = out + fl(beta).reshape(shape)
    return out


def _reduce(fn):
    def run(x, axes=None, keep_dims=None, **_):
        x = fl(x)
        axes = ints(axes) if axes is not None else list(range(x.dim()))
        return fn(x, dim=axes, keepdim=bool(scalar(keep_dims, False)))

    return run


OPS["reduce_mean"] = _reduce(torch.mean)
OPS["reduce_sum"] = _reduce(torch.sum)
OPS["reduce_max"] = _reduce(lambda x, dim, keepdim: torch.amax(x, dim=dim, keepdim=keepdim))
OPS["reduce_min"] = _reduce(lambda x, dim, keepdim: torch.amin(x, dim=dim, keepdim=keepdim))


# ------------------------------------------------------------------------- shapes


@op("reshape")
def reshape(x, shape, **_):
    target = ints(shape)
    target = [x.shape[i] if v == 0 and i < x.dim() else v for i, v in enumerate(target)]
    return x.reshape(target)


@op("transpose")
def transpose(x, perm, **_):
    return x.permute(ints(perm))


@op("expand_dims")
def expand_dims(x, axes, **_):
    rank = x.dim() + len(ints(axes))
    for axis in sorted(a % rank for a in ints(axes)):
        x = x.unsqueeze(axis)
    return x


@op("squeeze")
def squeeze(x, axes=None, **_):
    if axes is None:
        return x.squeeze()
    for axis in sorted((a % x.dim() for a in ints(axes)), reverse=True):
        x = x.squeeze(axis)
    return x


@op("split")
def split(x, axis, num_splits=None, split_sizes=None, **_):
    axis = int(scalar(axis))
    if split_sizes is not None:
        return list(torch.split(x, ints(split_sizes), dim=axis))
    return list(torch.chunk(x, int(scalar(num_splits)), dim=axis))


@op("concat")
def concat(values, axis, interleave=None, **_):
    axis = int(scalar(axis))
    if scalar(interleave, False):
        stacked = torch.stack(values, dim=axis + 1 if axis >= 0 else axis)
        return stacked.flatten(axis, axis + 1) if axis >= 0 else stacked.flatten(axis - 1, axis)
    return torch.cat(values, dim=axis)


@op("stack")
def stack(values, axis, **_):
    return torch.stack(values, dim=int(scalar(axis)))


@op("tile")
def tile(x, reps, **_):
    return x.repeat(ints(reps))


@op("slice_by_index")
def slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None, **_):
    rank = x.dim()
    begin, end = ints(begin), ints(end)
    stride = ints(stride) if stride is not None else [1] * rank
    masks = [([bool(v) for v in torch.as_tensor(m).reshape(-1).tolist()] if m is not None else [False] * rank)
             for m in (begin_mask, end_mask, squeeze_mask)]
    index = []
    for axis in range(rank):
        if masks[2][axis]:
            index.append(begin[axis])
            continue
        start = None if masks[0][axis] else begin[axis]
        stop = None if masks[1][axis] else end[axis]
        if stride[axis] < 0:
            raise UnsupportedProgram("slice_by_index with a negative stride")
        index.append(slice(start, stop, stride[axis]))
    return x[tuple(index)]


@op("slice_by_size")
def slice_by_size(x, begin, size, **_):
    index = tuple(slice(b, None if s == -1 else b + s) for b, s in zip(ints(begin), ints(size), strict=True))
    return x[index]


@op("gather")
def gather(x, indices, axis=None, batch_dims=None, validate_indices=None, **_):
    axis = int(scalar(axis, 0)) % x.dim()
    if int(scalar(batch_dims, 0)) != 0:
        raise UnsupportedProgram("gather with batch_dims != 0")
    idx = indices.long()
    idx = torch.where(idx < 0, idx + x.shape[axis], idx)
    out = torch.index_select(x, axis, idx.reshape(-1))
    return out.reshape(x.shape[:axis] + idx.shape + x.shape[axis + 1 :])


@op("pad")
def pad(x, pad, mode=None, constant_val=None, **_):
    x = fl(x)
    values = ints(pad)
    mode = scalar(mode, "constant")
    pairs = [(values[2 * i], values[2 * i + 1]) for i in range(len(values) // 2)]
    flat = [v for before, after in reversed(pairs) for v in (before, after)]
    torch_mode = {"constant": "constant", "reflect": "reflect", "replicate": "replicate"}.get(mode)
    if torch_mode is None:
        raise UnsupportedProgram(f"pad mode {mode}")
    if torch_mode == "constant":
        return F.pad(x, flat, value=float(scalar(constant_val, 0.0)))
    return F.pad(x, flat, mode=torch_mode)


# ------------------------------------------------------------------------- pooling, resampling


def _pool(kind: str):
    def run(x, kernel_sizes, strides=None, pad_type=None, pad=None, ceil_mode=None, exclude_padding_from_average=None, **_):
        x = fl(x)
        kernel = ints(kernel_sizes)
        strides = ints(strides) if strides is not None else [1] * len(kernel)
        if scalar(ceil_mode, False):
            raise UnsupportedProgram(f"{kind}_pool with ceil_mode")
        padding = _spatial_padding(x, kernel, strides, [1] * len(kernel), pad_type, pad)
        fn = {1: (F.max_pool1d, F.avg_pool1d), 2: (F.max_pool2d, F.avg_pool2d), 3: (F.max_pool3d, F.avg_pool3d)}[len(kernel)]
        if kind == "max":
            return fn[0](_pad_spatial(x, padding, float("-inf")), kernel, strides)
        total = fn[1](_pad_spatial(x, padding), kernel, strides) * math.prod(kernel)
        if scalar(exclude_padding_from_average, False):
            ones = _pad_spatial(torch.ones_like(x[:1, :1]), padding)
            return total / (fn[1](ones, kernel, strides) * math.prod(kernel))
        return total / math.prod(kernel)

    return run


OPS["avg_pool"] = _pool("avg")
OPS["max_pool"] = _pool("max")


@op("upsample_nearest_neighbor")
def upsample_nearest_neighbor(x, scale_factor_height=None, scale_factor_width=None, **_):
    scale = (float(scalar(scale_factor_height, 1)), float(scalar(scale_factor_width, 1)))
    return F.interpolate(fl(x), scale_factor=scale, mode="nearest")


@op("resample")
def resample(x, coordinates, sampling_mode=None, padding_mode=None, padding_value=None, coordinates_mode=None, align_corners=None, **_):
    x, grid = fl(x), fl(coordinates)
    align = bool(scalar(align_corners, False))
    mode = scalar(coordinates_mode, "normalized_minus_one_to_one")
    height, width = x.shape[-2:]
    if mode == "normalized_zero_to_one":
        grid = grid * 2 - 1
    elif mode == "unnormalized":
        size = torch.tensor([width, height], dtype=grid.dtype)
        grid = 2 * grid / (size - 1) - 1 if align else (2 * grid + 1) / size - 1
    elif mode != "normalized_minus_one_to_one":
        raise UnsupportedProgram(f"resample coordinates_mode {mode}")
    padding = scalar(padding_mode, "constant")
    if padding == "constant" and float(scalar(padding_value, 0.0)) != 0.0:
        raise UnsupportedProgram("resample with a non-zero constant padding value")
    torch_padding = {"constant": "zeros", "border": "border", "reflection": "reflection"}.get(padding)
    sampling = {"bilinear": "bilinear", "nearest": "nearest"}.get(scalar(sampling_mode, "bilinear"))
    if torch_padding is None or sampling is None:
        raise UnsupportedProgram(f"resample sampling {scalar(sampling_mode)} / padding {padding}")
    return F.grid_sample(x, grid, mode=sampling, padding_mode=torch_padding, align_corners=align)


# ------------------------------------------------------------------------- quantization


@op("quantize")
def quantize(input, scale, zero_point=None, axis=None, output_dtype=None, **_):
    dtype = scalar(output_dtype, "int8")
    low, high = (-128, 127) if dtype == "int8" else (0, 255)
    axis = None if axis is None else int(scalar(axis))
    x = fl(input)
    q = torch.round(x / _axis_shape(fl(scale), axis, x.dim()))
    if zero_point is not None:
        q = q + _axis_shape(zero_point.float(), axis, x.dim())
    return torch.clamp(q, low, high)


@op("dequantize")
def dequantize(input, scale, zero_point=None, axis=None, **_):
    axis = None if axis is None else int(scalar(axis))
    q = input.float()
    if zero_point is not None:
        q = q - _axis_shape(zero_point.float(), axis, q.dim())
    return q * _axis_shape(fl(scale), axis, q.dim())


@op("constexpr_affine_dequantize")
def constexpr_affine_dequantize(quantized_data, scale, zero_point, axis, **_):
    return dequantize(quantized_data, scale, zero_point, axis)


@op("constexpr_cast")
def constexpr_cast(source_val, output_dtype=None, **_):
    return fl(source_val)
