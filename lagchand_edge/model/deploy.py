"""The deployed form of LAGCHand: the training model's function in fewer, larger ops.

Every converter exports this form (`DeployModel`). It is derived from a trained `LAGCHand` by
re-packing its parameters, so checkpoints are unchanged and the mapping is tested
(`tests/test_deploy.py`: same outputs within float rounding). What changes:

- Encoder transformers run on channel-last tokens (B, P, N, d): their 1x1 convolutions become
  linear layers over the last axis, which every runtime takes without layout transposes.
- Layer norms are written as explicit means over the normalised axes (no flattening reshapes),
  and their affine is folded into the linear layers that follow them.
- Separable attention: q, k and v are three linear layers (no channel slices), the softmax runs
  over the last axis (one SOFTMAX op) and the context is one batched matmul.
- Graph attention: only the vertex tokens are projected to queries, the 1/sqrt(d) scale is in
  the query weights, keys and values are their own linear layers.
- The cross-hand injection (eqs. 9-10) is two multiplies and an add over the hand axis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lagchand_edge.model.blocks import MultiHeadAttention, PatchTransformer
from lagchand_edge.model.encoder import MobileViTv3Block
from lagchand_edge.model.graph import GraphLevelBlock, LinearGCN, VertexImageAttention

EPS = 1e-5


class Normalise(nn.Module):
    """A layer norm without its affine (folded into the next layer) over the last `axes` axes.

    By default one `layer_norm` op: CoreML has it, ExecuTorch's converter rewrites it into ops
    XNNPACK takes, and int8 quantizers leave it in float (int8 squares and variances ruin it).
    `explicit` writes it as means over the axes instead, which LiteRT lowers in 7 ops where its
    `layer_norm` lowering flattens through reshapes (14); `centred` inputs skip the mean.
    """

    def __init__(self, axes: int, centred: bool = False) -> None:
        super().__init__()
        self.axes, self.centred, self.explicit = axes, centred, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.explicit:
            return F.layer_norm(x, x.shape[-self.axes :], eps=EPS)
        dims = tuple(range(-self.axes, 0))
        centred = x if self.centred else x - x.mean(dim=dims, keepdim=True)
        return centred * torch.rsqrt((centred * centred).mean(dim=dims, keepdim=True) + EPS)


def explicit_norms(model: nn.Module) -> nn.Module:
    """Switch every `Normalise` of `model` to its explicit form (LiteRT export)."""
    for module in model.modules():
        if isinstance(module, Normalise):
            module.explicit = True
    return model


def _linear(weight: torch.Tensor, bias: torch.Tensor | None, scale: torch.Tensor | None = None, shift: torch.Tensor | None = None,
            factor: float = 1.0) -> nn.Linear:
    """y = factor * (W (scale * x + shift) + b) as one linear layer (a preceding affine folded in)."""
    weight = weight.detach().reshape(weight.shape[0], -1)
    bias = torch.zeros(weight.shape[0]) if bias is None else bias.detach()
    if scale is not None:
        bias = bias + weight @ shift.detach().reshape(-1)
        weight = weight * scale.detach().reshape(1, -1)
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight * factor)
        layer.bias.copy_(bias * factor)
    return layer


def _rows(module: nn.Module, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
    return module.weight[rows], module.bias[rows]


class TokenTransformer(nn.Module):
    """A linear-attention `PatchTransformer` on channel-last (B, P, N, d) tokens (same function)."""

    def __init__(self, layer: PatchTransformer) -> None:
        super().__init__()
        d = layer.attn.dim
        g1, b1 = layer.norm1.weight, layer.norm1.bias
        qkv = layer.attn.qkv
        self.q = _linear(*_rows(qkv, slice(0, 1)), g1, b1)
        self.k = _linear(*_rows(qkv, slice(1, 1 + d)), g1, b1)
        self.v = _linear(*_rows(qkv, slice(1 + d, 1 + 2 * d)), g1, b1)
        self.proj = _linear(layer.attn.proj.weight, layer.attn.proj.bias)
        self.ffn1 = _linear(layer.ffn[0].weight, layer.ffn[0].bias, layer.norm2.weight, layer.norm2.bias)
        self.ffn2 = _linear(layer.ffn[2].weight, layer.ffn[2].bias)
        self.norm1, self.norm2 = Normalise(3), Normalise(3)  # GroupNorm(1): over (P, N, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, P, N, d)
        n = self.norm1(x)
        b, p, tokens, d = x.shape
        scores = torch.softmax(self.q(n).reshape(b * p, 1, tokens), dim=-1)  # one score per token, softmax over tokens
        context = torch.bmm(scores, self.k(n).reshape(b * p, tokens, d)).reshape(b, p, 1, d)  # sum_n softmax(q)_n k_n
        x = x + self.proj(torch.relu(self.v(n)) * context)
        return x + self.ffn2(F.silu(self.ffn1(self.norm2(x))))


def unfold_tokens(x: torch.Tensor, patch: int = 2) -> torch.Tensor:
    """(B, C, H, W) -> (B, patch*patch, N, C): `blocks.unfold_patches`, channel-last."""
    b, c, h, w = x.shape
    y = x.permute(0, 2, 3, 1).reshape(b * (h // patch), patch, w // patch, patch, c)
    y = y.permute(1, 3, 0, 2, 4)  # (patch, patch, B * h', w', C); rank <= 5 throughout (CoreML's limit)
    tokens = (h // patch) * (w // patch)
    if b == 1:  # what is exported: no batch axis to move
        return y.reshape(1, patch * patch, tokens, c)
    return y.reshape(patch * patch, b, tokens, c).transpose(0, 1)


def fold_tokens(x: torch.Tensor, h: int, w: int, patch: int = 2) -> torch.Tensor:
    """Inverse of `unfold_tokens`."""
    b, _, _, c = x.shape
    y = x.reshape(patch * patch, b, h // patch, w // patch, c) if b == 1 else x.transpose(0, 1)
    y = y.reshape(patch, patch, b * (h // patch), w // patch, c).permute(2, 0, 3, 1, 4)
    return y.reshape(b, h, w, c).permute(0, 3, 1, 2)


class DeployMobileViTv3Block(nn.Module):
    """`MobileViTv3Block` with its transformers on channel-last tokens."""

    def __init__(self, block: MobileViTv3Block) -> None:
        super().__init__()
        self.local, self.project, self.fuse = block.local, block.project, block.fuse
        self.transformers = nn.Sequential(*[TokenTransformer(layer) for layer in block.transformers])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.local(x)
        h, w = x.shape[-2:]
        global_rep = fold_tokens(self.transformers(unfold_tokens(local)), h, w)
        return self.fuse(torch.cat([local, self.project(global_rep)], dim=1)) + x


class DeployGCN(nn.Module):
    """`LinearGCN` with the layer norm's centring folded into its linear layer (its outputs'
    mean over channels is itself linear in the input, so centred weights give centred outputs)."""

    def __init__(self, gcn: LinearGCN) -> None:
        super().__init__()
        weight, bias = gcn.linear.weight.detach(), gcn.linear.bias.detach()
        self.linear = _linear(weight - weight.mean(0, keepdim=True), bias - bias.mean())
        self.norm = Normalise(1, centred=True)
        self.weight = nn.Parameter(gcn.norm.weight.detach().clone())
        self.bias = nn.Parameter(gcn.norm.bias.detach().clone())

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:  # (B, 2, n, c)
        centred = self.linear(F.linear(x.transpose(-1, -2), adjacency).transpose(-1, -2))
        return x + F.silu(self.norm(centred) * self.weight + self.bias)


class DeployVertexImageAttention(nn.Module):
    """`VertexImageAttention`: the norm's affine and the 1/sqrt(d) scale folded into q, k, v (three
    linear layers, q for the vertex tokens only), heads as 4-D batched matmuls, the MLP's norm
    affine folded into its first layer."""

    def __init__(self, block: VertexImageAttention) -> None:
        super().__init__()
        attn: MultiHeadAttention = block.attn
        c = attn.heads * attn.head_dim
        self.heads, self.head_dim = attn.heads, attn.head_dim
        g, b = block.norm.weight, block.norm.bias
        self.q = _linear(*_rows(attn.qkv, slice(0, c)), g, b, factor=attn.head_dim**-0.5)
        self.k = _linear(*_rows(attn.qkv, slice(c, 2 * c)), g, b)
        self.v = _linear(*_rows(attn.qkv, slice(2 * c, 3 * c)), g, b)
        self.proj = _linear(attn.proj.weight, attn.proj.bias)
        norm, fc1, _, fc2 = block.mlp
        self.fc1 = _linear(fc1.weight, fc1.bias, norm.weight, norm.bias)
        self.fc2 = _linear(fc2.weight, fc2.bias)
        self.norm1, self.norm2 = Normalise(1), Normalise(1)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B * heads, T, head_dim)"""
        batch, tokens, _ = t.shape
        return t.reshape(batch, tokens, self.heads, self.head_dim).transpose(1, 2).reshape(batch * self.heads, tokens, self.head_dim)

    def forward(self, vertices: torch.Tensor, image: torch.Tensor) -> torch.Tensor:  # (B*2, n, c), (B*2, m, c)
        batch, n, c = vertices.shape
        tokens = self.norm1(torch.cat([vertices, image], dim=1))
        q, k, v = self._heads(self.q(tokens[:, :n])), self._heads(self.k(tokens)), self._heads(self.v(tokens))
        attended = torch.bmm(torch.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1), v)
        out = vertices + self.proj(attended.reshape(batch, self.heads, n, self.head_dim).transpose(1, 2).reshape(batch, n, c))
        return out + self.fc2(F.silu(self.fc1(self.norm2(out))))


class DeployGraphLevel(nn.Module):
    """`GraphLevelBlock` with the cross-hand injection (eqs. 9-10) as two scaled copies: each hand's
    own features and the other hand's (the hand axis swapped), weighted per hand."""

    def __init__(self, block: GraphLevelBlock) -> None:
        super().__init__()
        self.gcn = nn.ModuleList([DeployGCN(gcn) for gcn in block.gcn])
        self.attention = DeployVertexImageAttention(block.attention)
        alpha, beta = float(block.alpha.detach()), float(block.beta.detach())
        self.register_buffer("own", torch.tensor([beta, alpha]).reshape(2, 1, 1))  # hand axis: left, right
        self.register_buffer("other", torch.tensor([1 - beta, 1 - alpha]).reshape(2, 1, 1))

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        batch, _, n, c = x.shape
        for gcn in self.gcn:
            x = gcn(x, adjacency)
        h = self.attention(x.reshape(batch * 2, n, c), image).reshape(batch, 2, n, c)
        return h * self.own + torch.cat([h[:, 1:], h[:, :1]], dim=1) * self.other


def deploy_form(model: nn.Module) -> nn.Module:
    """A copy of a LAGCHand whose encoder transformer blocks and graph levels are their deployed
    forms; everything else (weights included) is shared with `model`."""
    import copy

    deployed = copy.copy(model)  # shallow: the submodules below are replaced, the rest shared
    deployed._modules = dict(model._modules)
    encoder = copy.copy(model.encoder)
    encoder._modules = dict(model.encoder._modules)
    linear = model.cfg.encoder.attention == "linear"  # the published MHSA backbone keeps its blocks
    encoder.layers = nn.ModuleList([
        nn.Sequential(*[DeployMobileViTv3Block(m) if linear and isinstance(m, MobileViTv3Block) else m for m in layer])
        for layer in model.encoder.layers
    ])
    graph = copy.copy(model.graph)
    graph._modules = dict(model.graph._modules)
    graph.blocks = nn.ModuleList([DeployGraphLevel(block) for block in model.graph.blocks])
    deployed.encoder, deployed.graph = encoder, graph
    return deployed
