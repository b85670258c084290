"""The int8 plan: module scopes hold in PT2E and LiteRT, embeddings ship as int8 tables."""

import re

import torch

from calibration.mixed_precision import ScopedQuantizer, calibrate
from calibration.plans import DEFAULT_INT8_PLAN, Int8Plan
from converters import TARGETS, get_target
from converters.executorch import quantization_config, quantize_pt2e
from converters.tflite import scope_regex
from lagchand_edge.artifact import read_manifest
from lagchand_edge.checkpoint import load_checkpoint
from lagchand_edge.model import DeployModel


def _exported(checkpoint):
    deploy = DeployModel(load_checkpoint(checkpoint)).eval()
    images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    return deploy, torch.export.export(deploy, (images[:1],)), images


def _scopes(node) -> list[str]:
    return [path for path, _ in (node.meta.get("nn_module_stack") or {}).values()]


def _inside(node, scope: str) -> bool:
    return any(path == scope or path.startswith(scope + ".") for path in _scopes(node))


def _is(node, name: str) -> bool:
    return isinstance(node, torch.fx.Node) and str(node.target).endswith(f".{name}.default")


def _int8_ops(module) -> list:
    """Ops computing in int8 after lowering: dequantized activations in, a quantized result out."""
    return [n for n in module.graph.nodes if n.op == "call_function" and n.users and all(_is(u, "quantize_per_tensor") for u in n.users)
            and any(_is(a, "dequantize_per_tensor") for a in n.args)]


def _dynamic_ops(module) -> list:
    """Ops fed by a per-call (dynamic) quantization: choose_qparams -> quantize -> dequantize -> op."""
    ops, frontier = [], [n for n in module.graph.nodes if "choose_qparams" in str(n.target)]
    while frontier:
        node = frontier.pop()
        for user in node.users:
            (frontier if "quantize" in str(user.target) or user.target is __import__("operator").getitem else ops).append(user)
    return ops


def test_scoped_quantizer_keeps_int8_inside_its_scope(tiny_checkpoint):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer

    _, exported, images = _exported(tiny_checkpoint)
    # XNNPACKQuantizer annotates `cat` everywhere whatever module filter is set; the scope must hold
    quantizer = ScopedQuantizer(XNNPACKQuantizer().set_global(quantization_config()), only=("model.encoder",))
    quantized = calibrate(exported.module(), quantizer, images)
    assert _int8_ops(quantized)
    for node in _int8_ops(quantized):
        assert _inside(node, "model.encoder"), (node.name, _scopes(node))


def test_a_scope_edge_that_would_share_a_float_tensor_stays_float(tiny_checkpoint):
    """Plans cut where an op inside the scope shares its int8 parameters with a tensor outside it
    (the residual add of a graph level, the layers around one attention block): prepare_pt2e
    stopped at each with a KeyError; the shared specs now fall back to float and the rest is int8."""
    deploy, exported, images = _exported(tiny_checkpoint)
    with torch.no_grad():
        reference = deploy(images[:1])[0]
    for plan in (Int8Plan(static=("model.graph.blocks.0",)), Int8Plan(static=("model",), keep_float=("model.graph.blocks.1.attention",)),
                 Int8Plan(static=("model",), float_activations=("model.graph.init",))):
        quantized = quantize_pt2e(exported.module(), images, plan)
        static = _int8_ops(quantized)
        assert static and all(_inside(n, scope) for n in static for scope in plan.static), plan
        assert not any(_inside(n, kept) for n in static for kept in plan.not_static), plan
        vertices = quantized(images[:1])[0]
        assert torch.isfinite(vertices).all() and (vertices - reference).abs().max() < 0.05, plan  # metres: int8 drift, no breakage


def test_executorch_plan_puts_each_module_in_its_scheme(tiny_checkpoint):
    _, exported, images = _exported(tiny_checkpoint)
    plan = get_target("executorch").INT8_PLAN
    quantized = quantize_pt2e(exported.module(), images, plan)
    dynamic = _dynamic_ops(quantized)
    assert dynamic and all(_inside(n, "model.graph") for n in dynamic)  # float activations: quantized per call
    static = _int8_ops(quantized)
    assert any(_inside(n, "model.encoder") for n in static) and any(_inside(n, "model.compact") for n in static)
    assert not any(_inside(n, "model.graph") for n in static)
    for node in _int8_ops(quantized) + dynamic:  # nothing quantized in the kept-float modules
        assert not any(_inside(node, kept) for kept in plan.keep_float), node.name


def test_litert_scope_regexes_match_the_converted_model(tiny_checkpoint, tmp_path):
    import contextlib
    import io

    import litert_torch

    deploy, _, images = _exported(tiny_checkpoint)
    with contextlib.redirect_stdout(io.StringIO()):
        edge = litert_torch.convert(deploy, (images[:1],))
    from ai_edge_litert.interpreter import Interpreter

    edge.export(str(tmp_path / "float.tflite"))
    names = [d["name"] for d in Interpreter(model_path=str(tmp_path / "float.tflite")).get_tensor_details()]
    scopes = [*get_target("tflite").INT8_PLAN.names, "model.graph.blocks.2.attention", "model.graph.head", "model.graph.widen"]
    counts = {name: sum(bool(re.search(scope_regex(deploy, name), tensor)) for tensor in names) for name in scopes}
    assert all(counts.values()), counts
    # a deeper scope matches a subset of its parent's tensors
    assert counts["model.graph.blocks.2.attention"] < counts["model.graph"]
    assert counts["model.graph.widen"] < counts["model.graph"]  # a ModuleList: its members, not its parent
    assert counts["model.encoder.layers.2"] < counts["model.encoder"]


def test_litert_scope_of_an_empty_list_module_matches_nothing():
    root = torch.nn.Module()
    root.levels, root.head = torch.nn.ModuleList(), torch.nn.Linear(2, 2)
    name = "torch.nn.modules.linear.Linear_head;t0"  # litert-torch's name of a tensor the head made
    assert re.search(scope_regex(root, "head"), name)
    assert re.search(scope_regex(root, "levels"), name) is None


class _HandMix(torch.nn.Module):
    """The graph levels' cross-hand mix (`DeployGraphLevel`): a constant 2x2 matrix from the left."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mix", torch.tensor([[[0.97, 0.03], [0.03, 0.97]]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bmm(self.mix, x.reshape(1, 2, -1)).reshape(x.shape)


class _ConvThenHandMix(torch.nn.Module):
    """A convolution's two channels mixed as two hands are; three outputs, as the model's."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.mixer = torch.nn.Conv2d(3, 2, 3, padding=1), _HandMix()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        c = self.conv(x)
        return self.mixer(c), c * 2, c + 1


def test_litert_static_scope_keeps_the_hand_mix_exact(tmp_path):
    """AI Edge Quantizer quantizes a batch matmul's constant as a right operand, per channel along
    its last axis: the contraction axis of the mix's constant left operand, and LiteRT's int8
    result was garbage (mean error 0.23 on outputs of at most 0.87; the whole model all-W8A8
    drifted 29.8 mm). Static scopes keep batch matmuls float (LiteRT's XNNPACK has no int8 one),
    so the mix adds almost nothing to the convolution's own int8 error."""
    from converters.recipe import Recipe
    from converters.tflite import Runner, write_model

    torch.manual_seed(0)
    net, images = _ConvThenHandMix().eval(), torch.rand(8, 3, 16, 16)
    with torch.no_grad():
        reference = net(images)[0].numpy()
    errors = {}
    for static in (("conv",), ("conv", "mixer")):
        out = tmp_path / "-".join(static)
        write_model(net, images[:1], Recipe("int8", images, Int8Plan(static=static, float_activations=(), keep_float=())), out)
        runner = Runner(out / "model.tflite")
        got = torch.cat([torch.from_numpy(runner.run([image[None].numpy()])[0]) for image in images]).numpy()
        errors[static] = abs(got - reference).mean()
    assert errors[("conv", "mixer")] < 1.2 * errors[("conv",)], errors


def test_int8_embedding_tables_round_trip(tiny_checkpoint):
    model = load_checkpoint(tiny_checkpoint)
    before = [t.detach().clone() for t in model.graph.vertex_embed]
    deploy = DeployModel(model, int8_embeddings=True).eval()
    tables = deploy.model.graph.vertex_embed
    assert len(tables) == len(before) and tables.codes0.dtype == torch.int8
    for i, original in enumerate(before):
        step = original.abs().amax(dim=-1, keepdim=True) / 127
        assert (tables[i] - original).abs().le(step / 2 + 1e-7).all()
    assert isinstance(model.graph.vertex_embed, torch.nn.ParameterList)  # the caller's model is untouched
    image = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        exact, approx = DeployModel(model)(image)[0], deploy(image)[0]
    assert (exact - approx).abs().max() * 1000 < 0.2  # mm: int8 tables move the trained test model's vertices by 0.045 mm


def test_default_plans_name_real_modules(tiny_checkpoint):
    from calibration.mixed_precision import check_module_names

    deploy = DeployModel(load_checkpoint(tiny_checkpoint))
    for plan in (DEFAULT_INT8_PLAN, *(get_target(name).INT8_PLAN for name in TARGETS), Int8Plan()):
        check_module_names(deploy, plan)


def _activation_scales(module) -> list[float]:
    return [float(n.args[1]) for n in module.graph.nodes if _is(n, "quantize_per_tensor") and isinstance(n.args[1], float)]


def test_minmax_observer_gives_the_calibration_range_and_histogram_a_clipped_one(tiny_checkpoint):
    _, _, images = _exported(tiny_checkpoint)
    plan = Int8Plan(static=("model.encoder",))
    scales = {observer: _activation_scales(quantize_pt2e(_exported(tiny_checkpoint)[1].module(), images, plan, observer=observer))
              for observer in ("minmax", "histogram")}
    assert len(scales["minmax"]) == len(scales["histogram"]) > 10
    pairs = list(zip(scales["minmax"], scales["histogram"], strict=True))
    assert sum(abs(a - b) > 1e-3 * a for a, b in pairs) > len(pairs) // 2  # the observers disagree on most tensors
    assert sum(a >= b * (1 - 1e-6) for a, b in pairs) > 0.9 * len(pairs)  # and min-max covers the whole range


def test_silus_between_int8_layers_run_as_int8_sigmoid_and_product(tiny_checkpoint, int8_artifacts):
    """In ExecuTorch's static int8 scopes each SiLU is an int8 sigmoid (the fixed [0, 1) grid
    XNNPACK's kernel needs) and an int8 product, so no dequantize/quantize pair surrounds it; in
    the float-activation scope it stays fp32. The lowered artifact runs every one in XNNPACK."""
    deploy, _, images = _exported(tiny_checkpoint)
    executorch = get_target("executorch")
    quantized = executorch.ptq_graph(deploy, images[:1], images, executorch.INT8_PLAN)
    sigmoids = [n for n in quantized.graph.nodes if n.target == torch.ops.aten.sigmoid.default]
    assert not [n for n in quantized.graph.nodes if n.target == torch.ops.aten.silu.default]
    int8 = set(_int8_ops(quantized))
    in_static = [n for n in sigmoids if _inside(n, "model.encoder") or _inside(n, "model.compact")]
    assert in_static and all(n in int8 for n in in_static)
    for node in in_static:
        (output,) = node.users
        assert output.args[1:3] == (1 / 256, -128)
        products = [user for dequantized in output.users for user in dequantized.users]
        assert products and all(p.target == torch.ops.aten.mul.Tensor and p in int8 for p in products)
    assert not [n for n in sigmoids if _inside(n, "model.graph") and n in int8]
    portable = read_manifest(int8_artifacts["executorch"].path)["recipe"]["delegation"]["portable_ops"]
    assert not [op for op in portable if "sigmoid" in op or "quantize" in op]
