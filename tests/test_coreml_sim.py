"""coreml-sim against PyTorch: one-op ML Programs (built with coremltools' MIL builder, converted and
saved as real .mlpackages) run by the interpreter and compared with torch on random inputs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ct = pytest.importorskip("coremltools")
from coremltools.converters.mil import Builder as mb  # noqa: E402

from converters.coreml.sim import MILProgram, UnsupportedProgram  # noqa: E402

RNG = np.random.default_rng(0)


def _run(tmp_path, build, shapes, *feeds, precision="fp32", expect_op=None):
    """Build a program from `build(*inputs)`, save it as an .mlpackage, run it in the interpreter."""
    specs = [mb.TensorSpec(shape=s) for s in shapes]

    if len(specs) == 1:  # the builder reads the function's signature: one named parameter per input
        def body(a):
            return build(a)
    else:
        def body(a, b):
            return build(a, b)
    program = mb.program(input_specs=specs, opset_version=ct.target.iOS17)(body)

    compute = ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16
    model = ct.convert(program, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17, compute_precision=compute,
                       skip_model_load=True)
    path = tmp_path / f"p{len(list(tmp_path.iterdir()))}.mlpackage"
    model.save(str(path))
    sim = MILProgram(path)
    if expect_op:
        assert expect_op in sim.op_counts(), sim.op_counts()
    names = list(sim.inputs)
    out = sim(**dict(zip(names, feeds, strict=True)))
    return [out[name] for name in sim.output_names]


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def close(got, want, tol=1e-5):
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else want
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


T = torch.from_numpy


@pytest.mark.parametrize("pad_type,pad", [("valid", None), ("same", None), ("same_lower", None), ("custom", [1, 2, 0, 1])])
@pytest.mark.parametrize("strides,dilations,groups", [([1, 1], [1, 1], 1), ([2, 2], [1, 1], 1), ([1, 1], [2, 2], 1), ([1, 1], [1, 1], 4)])
def test_conv(tmp_path, pad_type, pad, strides, dilations, groups):
    x, w, b = rand(1, 8, 9, 10), rand(6 if groups == 1 else 8, 8 // groups, 3, 3), rand(6 if groups == 1 else 8)
    kwargs = {"pad": pad} if pad else {}
    (got,) = _run(tmp_path, lambda v: mb.conv(x=v, weight=w, bias=b, pad_type=pad_type, strides=strides, dilations=dilations,
                                              groups=groups, **kwargs), [x.shape], x, expect_op="conv")
    if pad_type == "custom":
        padded = F.pad(T(x), (pad[2], pad[3], pad[0], pad[1]))
        want = F.conv2d(padded, T(w), T(b), strides, 0, dilations, groups)
    elif pad_type.startswith("same"):  # 'same' puts the odd pixel after, 'same_lower' before
        total = [max((-(-size // s) - 1) * s + (3 - 1) * d + 1 - size, 0) for size, s, d in zip((9, 10), strides, dilations, strict=True)]
        split = [(t - t // 2, t // 2) if pad_type == "same_lower" else (t // 2, t - t // 2) for t in total]
        padded = F.pad(T(x), (*split[1], *split[0]))
        want = F.conv2d(padded, T(w), T(b), strides, 0, dilations, groups)
    else:
        want = F.conv2d(T(x), T(w), T(b), strides, 0, dilations, groups)
    close(got, want, 1e-4)


def test_linear_and_matmul(tmp_path):
    x, w, b, y = rand(2, 5, 7), rand(4, 7), rand(4), rand(2, 4, 7)
    got = _run(tmp_path, lambda v, u: [mb.linear(x=v, weight=w, bias=b), mb.matmul(x=v, y=u, transpose_y=True),
                                       mb.matmul(x=v, y=v, transpose_x=True)], [x.shape, y.shape], x, y)
    close(got[0], F.linear(T(x), T(w), T(b)), 1e-5)
    close(got[1], T(x) @ T(y).transpose(-1, -2), 1e-5)
    close(got[2], T(x).transpose(-1, -2) @ T(x), 1e-5)


@pytest.mark.parametrize("name,fn", [("add", torch.add), ("sub", torch.sub), ("mul", torch.mul), ("real_div", torch.div)])
def test_binary_broadcast(tmp_path, name, fn):
    x, y = rand(2, 3, 4), rand(3, 1) + 3.0
    (got,) = _run(tmp_path, lambda a, b: getattr(mb, name)(x=a, y=b), [x.shape, y.shape], x, y, expect_op=name)
    close(got, fn(T(x), T(y)))


@pytest.mark.parametrize("name,fn", [("greater", torch.gt), ("less", torch.lt), ("equal", torch.eq), ("greater_equal", torch.ge)])
def test_comparisons(tmp_path, name, fn):
    x, y = rand(2, 3, 4), rand(3, 1)
    x[0, :, 0] = y[:, 0]  # ties, where equal and greater_equal differ from greater
    (got,) = _run(tmp_path, lambda a, b: mb.cast(x=getattr(mb, name)(x=a, y=b), dtype="fp32"), [x.shape, y.shape], x, y, expect_op=name)
    close(got, fn(T(x), T(y)).float(), 0)


@pytest.mark.parametrize("name,build,want", [
    ("relu", lambda v: mb.relu(x=v), torch.relu),
    ("silu", lambda v: mb.silu(x=v), F.silu),
    ("sigmoid", lambda v: mb.sigmoid(x=v), torch.sigmoid),
    ("gelu", lambda v: mb.gelu(x=v, mode="EXACT"), F.gelu),
    ("gelu", lambda v: mb.gelu(x=v, mode="TANH_APPROXIMATION"), lambda t: F.gelu(t, approximate="tanh")),
    ("softmax", lambda v: mb.softmax(x=v, axis=1), lambda t: torch.softmax(t, 1)),
    ("tanh", lambda v: mb.tanh(x=v), torch.tanh),
    ("clip", lambda v: mb.clip(x=v, alpha=-0.5, beta=0.7), lambda t: torch.clamp(t, -0.5, 0.7)),
    ("rsqrt", lambda v: mb.rsqrt(x=mb.abs(x=v), epsilon=1e-3), lambda t: torch.rsqrt(t.abs() + 1e-3)),
])
def test_activations(tmp_path, name, build, want):
    x = rand(2, 5, 6)
    (got,) = _run(tmp_path, build, [x.shape], x, expect_op=name)
    close(got, want(T(x)), 1e-5)


def test_norms(tmp_path):
    x, gamma, beta = rand(2, 4, 5, 6), rand(4), rand(4)
    mean, var = rand(4), np.abs(rand(4)) + 0.1
    g2, b2 = rand(5, 6), rand(5, 6)
    got = _run(tmp_path, lambda v: [mb.batch_norm(x=v, mean=mean, variance=var, gamma=gamma, beta=beta, epsilon=1e-3),
                                    mb.layer_norm(x=v, axes=[-2, -1], gamma=g2, beta=b2, epsilon=1e-5)], [x.shape], x)
    close(got[0], F.batch_norm(T(x), T(mean), T(var), T(gamma), T(beta), False, 0.0, 1e-3), 1e-5)
    close(got[1], F.layer_norm(T(x), (5, 6), T(g2), T(b2), 1e-5), 1e-5)


def test_reductions_and_shapes(tmp_path):
    x = rand(2, 3, 4, 5)
    got = _run(tmp_path, lambda v: [
        mb.reduce_mean(x=v, axes=[2, 3], keep_dims=True), mb.reduce_sum(x=v, axes=[1], keep_dims=False),
        mb.reshape(x=v, shape=[6, -1]), mb.transpose(x=v, perm=[0, 3, 1, 2]), mb.expand_dims(x=mb.reduce_sum(x=v, axes=[0]), axes=[0, -1]),
        mb.squeeze(x=mb.reshape(x=v, shape=[2, 1, 3, 20]), axes=[1]), mb.tile(x=v, reps=[1, 2, 1, 1]),
        mb.stack(values=[v, v], axis=1), mb.concat(values=[v, v], axis=-1),
        mb.reduce_max(x=v, axes=[1, 3], keep_dims=False), mb.reduce_max(x=v, axes=[-1], keep_dims=True),
    ], [x.shape], x)
    t = T(x)
    wants = [t.mean((2, 3), keepdim=True), t.sum(1), t.reshape(6, -1), t.permute(0, 3, 1, 2), t.sum(0)[None, ..., None], t.reshape(2, 3, 20),
             t.repeat(1, 2, 1, 1), torch.stack([t, t], 1), torch.cat([t, t], -1), t.amax((1, 3)), t.amax(-1, keepdim=True)]
    for g, w in zip(got, wants, strict=True):
        close(g, w)


def test_split_slice_gather(tmp_path):
    x = rand(4, 6, 5)
    indices = np.array([4, 0, 2, 2], dtype=np.int32)
    got = _run(tmp_path, lambda v: [*mb.split(x=v, split_sizes=[1, 2, 3], axis=1), *mb.split(x=v, num_splits=2, axis=0),
                                    mb.slice_by_index(x=v, begin=[1, 0, 1], end=[3, 6, 5], stride=[1, 2, 2], end_mask=[False, True, False]),
                                    mb.slice_by_index(x=v, begin=[2, 0, 0], end=[3, 6, 5], squeeze_mask=[True, False, False]),
                                    mb.gather(x=v, indices=indices, axis=2),
                                    mb.slice_by_size(x=v, begin=[1, 2, 0], size=[2, 3, -1])], [x.shape], x)
    t = T(x)
    wants = [*torch.split(t, [1, 2, 3], 1), *torch.chunk(t, 2, 0), t[1:3, ::2, 1:5:2], t[2], t[:, :, [4, 0, 2, 2]], t[1:3, 2:5, :]]
    for g, w in zip(got, wants, strict=True):
        close(g, w)


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate"])
def test_pad(tmp_path, mode):
    x = rand(1, 2, 5, 6)
    (got,) = _run(tmp_path, lambda v: mb.pad(x=v, pad=[1, 2, 2, 1], mode=mode, constant_val=0.5), [x.shape], x, expect_op="pad")
    kwargs = {"value": 0.5} if mode == "constant" else {}
    close(got, F.pad(T(x), (2, 1, 1, 2), mode=mode, **kwargs))


@pytest.mark.parametrize("pad_type,exclude", [("valid", False), ("same", True), ("same", False), ("custom", True)])
def test_pooling(tmp_path, pad_type, exclude):
    x = rand(1, 3, 7, 8)
    kwargs = {"pad": [1, 1, 1, 1]} if pad_type == "custom" else {}
    got = _run(tmp_path, lambda v: [mb.avg_pool(x=v, kernel_sizes=[3, 3], strides=[2, 2], pad_type=pad_type, exclude_padding_from_average=exclude,
                                                **kwargs), mb.max_pool(x=v, kernel_sizes=[3, 3], strides=[2, 2], pad_type=pad_type, **kwargs)],
               [x.shape], x)
    if pad_type == "valid":
        close(got[0], F.avg_pool2d(T(x), 3, 2))
        close(got[1], F.max_pool2d(T(x), 3, 2))
    elif pad_type == "custom":
        close(got[0], F.avg_pool2d(T(x), 3, 2, padding=1, count_include_pad=not exclude))
        close(got[1], F.max_pool2d(T(x), 3, 2, padding=1))
    else:  # 'same' on 7x8 with stride 2 pads (1, 1) rows and (0, 1) columns
        padded = F.pad(T(x), (0, 1, 1, 1))
        ones = F.pad(torch.ones(1, 1, 7, 8), (0, 1, 1, 1))
        want = F.avg_pool2d(padded, 3, 2) * 9 / (F.avg_pool2d(ones, 3, 2) * 9 if exclude else 9)
        close(got[0], want)
        close(got[1], F.max_pool2d(F.pad(T(x), (0, 1, 1, 1), value=-np.inf), 3, 2))


def test_upsample_and_resample(tmp_path):
    x = rand(1, 2, 4, 5)
    grid = RNG.uniform(-1.1, 1.1, (1, 3, 6, 2)).astype(np.float32)
    got = _run(tmp_path, lambda v, g: [mb.upsample_nearest_neighbor(x=v, scale_factor_height=2, scale_factor_width=3),
                                       mb.resample(x=v, coordinates=g, sampling_mode="bilinear", padding_mode="border", padding_value=0.0,
                                                   coordinates_mode="normalized_minus_one_to_one", align_corners=False)],
               [x.shape, grid.shape], x, grid)
    close(got[0], F.interpolate(T(x), scale_factor=(2, 3), mode="nearest"))
    close(got[1], F.grid_sample(T(x), T(grid), mode="bilinear", padding_mode="border", align_corners=False))


def test_quantize_dequantize_against_torch_fake_quant(tmp_path):
    x = rand(1, 4, 3, 3, scale=2.0)
    scale, zero = 0.03, 5
    channel_scales = np.array([0.01, 0.02, 0.05, 0.1], np.float32)
    got = _run(tmp_path, lambda v: [
        mb.dequantize(input=mb.quantize(input=v, scale=np.float32(scale), zero_point=np.int8(zero), output_dtype="int8"),
                      scale=np.float32(scale), zero_point=np.int8(zero)),
        mb.dequantize(input=mb.quantize(input=v, scale=channel_scales, axis=1, output_dtype="uint8", zero_point=np.full(4, 128, np.uint8)),
                      scale=channel_scales, axis=1, zero_point=np.full(4, 128, np.uint8)),
    ], [x.shape], x)
    close(got[0], torch.fake_quantize_per_tensor_affine(T(x), scale, zero, -128, 127))
    want = torch.fake_quantize_per_channel_affine(T(x), T(channel_scales), torch.full((4,), 128, dtype=torch.int32), 1, 0, 255)
    close(got[1], want, 1e-6)


def test_constexpr_affine_dequantize_weights(tmp_path):
    q = RNG.integers(-128, 128, (6, 5)).astype(np.int8)
    scales, zeros = RNG.uniform(0.01, 0.1, 6).astype(np.float32), RNG.integers(-3, 3, 6).astype(np.int8)
    x = rand(2, 5)
    (got,) = _run(tmp_path, lambda v: mb.linear(x=v, weight=mb.constexpr_affine_dequantize(quantized_data=q, zero_point=zeros, scale=scales,
                                                                                             axis=0)), [x.shape], x)
    weight = torch._make_per_channel_quantized_tensor(torch.from_numpy(q), torch.from_numpy(scales).double(),
                                                      torch.from_numpy(zeros).long(), 0).dequantize()
    close(got, F.linear(T(x), weight), 1e-5)


def test_fp16_programs_compute_in_fp16(tmp_path):
    x = rand(3, 4) * 100 + 1000  # |x| >= ~700: fp16 spacing 0.5, and x * 1000 overflows fp16 (max 65504)
    got = _run(tmp_path, lambda v: [mb.mul(x=v, y=np.float32(1000.0)), mb.add(x=v, y=np.float32(1e-3))], [x.shape], x, precision="fp16")
    big = x.astype(np.float16).astype(np.float32) * np.float32(1000)
    expected = np.where(np.abs(big) > 65504, np.sign(big) * np.inf, big.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(got[0], expected)  # overflow shows up as inf, as on device
    assert np.isinf(got[0]).any()
    np.testing.assert_array_equal(got[1], x.astype(np.float16).astype(np.float32))  # 1e-3 vanishes at this fp16 resolution


def test_cast_and_unknown_ops_are_clear(tmp_path):
    x = rand(2, 3)
    (got,) = _run(tmp_path, lambda v: mb.cast(x=mb.cast(x=v, dtype="fp16"), dtype="fp32"), [x.shape], x)
    close(got, x.astype(np.float16).astype(np.float32), 0)
    (got,) = _run(tmp_path, lambda v: mb.erf(x=v), [x.shape], x, expect_op="erf")
    close(got, torch.erf(T(x)), 1e-6)
    with pytest.raises(UnsupportedProgram, match="'topk'"):
        _run(tmp_path, lambda v: mb.topk(x=v, k=2)[0], [x.shape], x)
