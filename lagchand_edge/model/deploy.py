"""The deployed form of LAGCHand: the training model's function in fewer, larger ops.

Every converter exports this form (`DeployModel`). It is derived from a trained `LAGCHand` by
re-packing its parameters, so checkpoints are unchanged and the mapping is tested
(`tests/test_deploy.py`: same outputs within float rounding). What changes:

- Encoder transformers run on channel-last tokens (B*P, N, d): their 1x1 convolutions become
  linear layers over the last axis, which every runtime takes without layout transposes.
- Layer norms are written as explicit means over the normalised axes (no flattening reshapes),
  and their affine is folded into the linear layers that follow them.
- Separable attention: the token scores are one batched matmul of the query weights with the
  tokens, the softmax runs over the last axis (one SOFTMAX op), and the key projection acts on
  one pooled token per patch position (the context), not on every token.
- The graph decoder keeps each sample's two hands as consecutive rows of (B*2, n, c) tokens
  (no reshapes between its parts); the image tokens come from the channel-last map by a reshape.
- Graph attention: only the vertex tokens are projected to queries, the 1/sqrt(d) scale is in
  the query weights, keys and values are one linear layer and one head split.
- The cross-hand injection (eqs. 9-10) is one batched matmul of a 2x2 mixing matrix with the
  two hands.
- No concatenation repeats a tensor (ExecuTorch's XNNPACK partitioner refuses those and runs
  them as portable kernels between delegates): the binary-tree upsampling is one linear layer
  with the widening weights twice over, and each hand's image tokens come from their own add.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lagchand_edge.model.blocks import MultiHeadAttention, PatchTransformer
from lagchand_edge.model.encoder import MobileViTv3Block
from lagchand_edge.model.graph import GraphLevelBlock, LinearGCN, LinearGraph, VertexImageAttention

EPS = 1e-5


class Normalise(nn.Module):
    """A layer norm without its affine (folded into the next layer) over the last `axes` axes.

    By default one `layer_norm` op: CoreML has it, ExecuTorch's converter rewrites it into ops
    XNNPACK takes, and int8 quantizers leave it in float (int8 squares and variances ruin it).
    `explicit` writes it as means over the axes instead, which LiteRT lowers in 7 ops where its
    `layer_norm` lowering flattens through reshapes (14); `centred` inputs skip the mean. Over
    the last axis alone (`channels` given) the variance plus eps is one fully connected layer
    (weights 1/channels, bias eps): litert-torch lowers that mean-and-add through a reshape.
    """

    def __init__(self, axes: int, centred: bool = False, channels: int | None = None) -> None:
        super().__init__()
        self.axes, self.centred, self.explicit = axes, centred, False
        if channels is not None:
            self.register_buffer("average", torch.full((1, channels), 1.0 / channels), persistent=False)
            self.register_buffer("eps", torch.tensor([EPS]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.explicit:
            return F.layer_norm(x, x.shape[-self.axes :], eps=EPS)
        dims = tuple(range(-self.axes, 0))
        centred = x if self.centred else x - x.mean(dim=dims, keepdim=True)
        squares = centred * centred
        variance = F.linear(squares, self.average, self.eps) if hasattr(self, "average") else squares.mean(dim=dims, keepdim=True) + EPS
        return centred * torch.rsqrt(variance)


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
    """A linear-attention `PatchTransformer` on channel-last (B*P, N, d) tokens (same function).

    The token scores are one batched matmul of the query weights with the normalised tokens,
    already in the (B*P, 1, N) shape the softmax over tokens needs; the query bias is dropped
    (a softmax does not see a constant shift).
    """

    def __init__(self, layer: PatchTransformer, patch_pixels: int) -> None:
        super().__init__()
        d = layer.attn.dim
        g1, b1 = layer.norm1.weight, layer.norm1.bias
        qkv = layer.attn.qkv
        query = qkv.weight.detach()[0].reshape(1, 1, d) * g1.detach().reshape(1, 1, d)
        self.query = nn.Parameter(query.repeat(patch_pixels, 1, 1))  # one copy per patch position: no broadcast to lower
        self.k = _linear(*_rows(qkv, slice(1, 1 + d)), g1, b1)
        self.v = _linear(*_rows(qkv, slice(1 + d, 1 + 2 * d)), g1, b1)
        self.proj = _linear(layer.attn.proj.weight, layer.attn.proj.bias)
        self.ffn1 = _linear(layer.ffn[0].weight, layer.ffn[0].bias, layer.norm2.weight, layer.norm2.bias)
        self.ffn2 = _linear(layer.ffn[2].weight, layer.ffn[2].bias)
        self.norm1, self.norm2 = Normalise(3), Normalise(3)  # GroupNorm(1): over each sample's (P, N, d)

    def _normalise(self, norm: Normalise, x: torch.Tensor, batch: int) -> torch.Tensor:
        if batch == 1:  # what is exported: the sample is the whole (P, N, d) tensor
            return norm(x)
        return norm(x.reshape(batch, -1, *x.shape[1:])).reshape(x.shape)

    def forward(self, x: torch.Tensor, batch: int) -> torch.Tensor:  # (B*P, N, d)
        n = self._normalise(self.norm1, x, batch)
        query = self.query if batch == 1 else self.query.repeat(batch, 1, 1)
        scores = torch.softmax(torch.bmm(query, n.transpose(1, 2)), dim=-1)  # one score per token, softmax over tokens
        # sum_n softmax(q)_n k(n_n) = k(sum_n softmax(q)_n n_n), the scores summing to 1: k projects
        # one pooled token per patch position instead of every token
        context = self.k(torch.bmm(scores, n))
        x = x + self.proj(torch.relu(self.v(n)) * context)
        return x + self.ffn2(F.silu(self.ffn1(self._normalise(self.norm2, x, batch))))


def unfold_tokens(x: torch.Tensor, patch: int = 2) -> torch.Tensor:
    """(B, C, H, W) -> (B*patch*patch, N, C): `blocks.unfold_patches`, channel-last, sample-major."""
    b, c, h, w = x.shape
    y = x.permute(0, 2, 3, 1).reshape(b * (h // patch), patch, w // patch, patch, c)
    y = y.permute(1, 3, 0, 2, 4)  # (patch, patch, B * h', w', C); rank <= 5 throughout (CoreML's limit)
    tokens = (h // patch) * (w // patch)
    if b == 1:  # what is exported: no batch axis to move
        return y.reshape(patch * patch, tokens, c)
    return y.reshape(patch * patch, b, tokens, c).transpose(0, 1).reshape(b * patch * patch, tokens, c)


def fold_tokens(x: torch.Tensor, h: int, w: int, patch: int = 2) -> torch.Tensor:
    """Inverse of `unfold_tokens`."""
    c = x.shape[-1]
    b = x.shape[0] // (patch * patch)
    y = x.reshape(patch * patch, b, h // patch, w // patch, c) if b == 1 else x.reshape(b, patch * patch, -1, c).transpose(0, 1)
    y = y.reshape(patch, patch, b * (h // patch), w // patch, c).permute(2, 0, 3, 1, 4)
    return y.reshape(b, h, w, c).permute(0, 3, 1, 2)


class DeployMobileViTv3Block(nn.Module):
    """`MobileViTv3Block` with its transformers on channel-last tokens."""

    def __init__(self, block: MobileViTv3Block, patch: int = 2) -> None:
        super().__init__()
        self.local, self.project, self.fuse = block.local, block.project, block.fuse
        self.transformers = nn.ModuleList([TokenTransformer(layer, patch * patch) for layer in block.transformers])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.local(x)
        h, w = x.shape[-2:]
        tokens = unfold_tokens(local)
        for transformer in self.transformers:
            tokens = transformer(tokens, x.shape[0])
        return self.fuse(torch.cat([local, self.project(fold_tokens(tokens, h, w))], dim=1)) + x


class DeployGCN(nn.Module):
    """`LinearGCN` on (B*2, n, c) with the layer norm's centring folded into its linear layer (its
    outputs' mean over channels is itself linear in the input, so centred weights give centred outputs)."""

    def __init__(self, gcn: LinearGCN) -> None:
        super().__init__()
        weight, bias = gcn.linear.weight.detach(), gcn.linear.bias.detach()
        channels = weight.shape[0]
        self.linear = _linear(weight - weight.mean(0, keepdim=True), bias - bias.mean())
        self.norm = Normalise(1, centred=True, channels=channels)
        self.weight = nn.Parameter(gcn.norm.weight.detach().clone())
        self.bias = nn.Parameter(gcn.norm.bias.detach().clone())

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:  # (B*2, n, c)
        # A_hat X stays a linear layer over the node axis (`LinearGCN`): as a batched matmul with the
        # constant graph LiteRT saves its two transposes, but its fp16 and ExecuTorch's int8 then
        # store the graph in fp32 (+0.45 / +0.7 MB), for no time measured; as a gather of the <= 9
        # neighbours (`SparseRows`) every int8 artifact ran 7-9% slower (README, "Deployed form")
        centred = self.linear(F.linear(x.transpose(-1, -2), adjacency).transpose(-1, -2))
        return x + F.silu(self.norm(centred) * self.weight + self.bias)


class DeployVertexImageAttention(nn.Module):
    """`VertexImageAttention`: the norm's affine and the 1/sqrt(d) scale folded into q and one kv
    layer (q for the vertex tokens only), heads as batched matmuls, the MLP's norm affine folded
    into its first layer."""

    def __init__(self, block: VertexImageAttention) -> None:
        super().__init__()
        attn: MultiHeadAttention = block.attn
        c = attn.heads * attn.head_dim
        self.heads, self.head_dim = attn.heads, attn.head_dim
        g, b = block.norm.weight, block.norm.bias
        self.q = _linear(*_rows(attn.qkv, slice(0, c)), g, b, factor=attn.head_dim**-0.5)
        self.kv = _linear(*_rows(attn.qkv, slice(c, 3 * c)), g, b)  # keys then values: one GEMM, one head split
        self.proj = _linear(attn.proj.weight, attn.proj.bias)
        norm, fc1, _, fc2 = block.mlp
        self.fc1 = _linear(fc1.weight, fc1.bias, norm.weight, norm.bias)
        self.fc2 = _linear(fc2.weight, fc2.bias)
        self.norm1, self.norm2 = Normalise(1, channels=c), Normalise(1, channels=c)

    def _heads(self, t: torch.Tensor, parts: int) -> list[torch.Tensor]:
        """(B, T, parts * C) -> `parts` tensors of (B * heads, T, head_dim)."""
        batch, tokens, _ = t.shape
        split = t.reshape(batch, tokens, parts * self.heads, self.head_dim).transpose(1, 2)
        if parts == 1:  # no slice: a whole-tensor slice exports as an alias, which CoreML's converter refuses
            return [split.reshape(batch * self.heads, tokens, self.head_dim)]
        return [split[:, i * self.heads : (i + 1) * self.heads].reshape(batch * self.heads, tokens, self.head_dim) for i in range(parts)]

    def forward(self, vertices: torch.Tensor, image: torch.Tensor) -> torch.Tensor:  # (B*2, n, c), (B*2, m, c)
        batch, n, c = vertices.shape
        tokens = self.norm1(torch.cat([vertices, image], dim=1))
        (q,), (k, v) = self._heads(self.q(tokens[:, :n]), 1), self._heads(self.kv(tokens), 2)
        attended = torch.bmm(torch.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1), v)
        out = vertices + self.proj(attended.reshape(batch, self.heads, n, self.head_dim).transpose(1, 2).reshape(batch, n, c))
        return out + self.fc2(F.silu(self.fc1(self.norm2(out))))


class DeployGraphLevel(nn.Module):
    """`GraphLevelBlock` on (B*2, n, c), the cross-hand injection (eqs. 9-10) as one batched matmul
    of the 2x2 hand-mixing matrix with each sample's two hands."""

    def __init__(self, block: GraphLevelBlock) -> None:
        super().__init__()
        self.gcn = nn.ModuleList([DeployGCN(gcn) for gcn in block.gcn])
        self.attention = DeployVertexImageAttention(block.attention)
        alpha, beta = float(block.alpha.detach()), float(block.beta.detach())
        self.register_buffer("mix", torch.tensor([[[beta, 1 - beta], [1 - alpha, alpha]]]))  # rows: new left, new right

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        for gcn in self.gcn:
            x = gcn(x, adjacency)
        h = self.attention(x, image)
        pairs, n, c = h.shape[0] // 2, h.shape[1], h.shape[2]
        mix = self.mix if pairs == 1 else self.mix.expand(pairs, 2, 2)
        return torch.bmm(mix, h.reshape(pairs, 2, n * c)).reshape(pairs * 2, n, c)


class DeployLinearGraph(nn.Module):
    """`LinearGraph` with both hands of a sample as consecutive rows of (B*2, n, c) tokens from the
    start, the image tokens taken from the channel-last map without transposes, its levels deployed.
    Parameters and module names are the training module's (int8 plans address them)."""

    def __init__(self, graph: LinearGraph) -> None:
        super().__init__()
        self.grid = graph.grid
        for name, buffer in graph.named_buffers(recurse=False):
            self.register_buffer(name, buffer, persistent=False)
        self.to_mesh, self.init, self.head = graph.to_mesh, graph.init, graph.head
        # binary-tree upsampling (`LinearGraph._children`) and widening as one layer: both children of
        # node i get W x_i + b, i.e. (W; W) x_i + (b; b) read as two rows
        self.widen = nn.ModuleList([_linear(torch.cat([w.weight, w.weight]), torch.cat([w.bias, w.bias])) for w in graph.widen])
        self.vertex_embed, self.image_embed = graph.vertex_embed, graph.image_embed
        self.blocks = nn.ModuleList([DeployGraphLevel(block) for block in graph.blocks])

    def _image_tokens(self, bound: torch.Tensor, t: int) -> torch.Tensor:
        """G_t pooled to a grid x grid map, as (B*2, grid^2, c) tokens, each sample's for both its hands."""
        factor = bound.shape[-1] // self.grid
        pooled = F.avg_pool2d(bound, factor) if factor > 1 else bound
        batch, c = pooled.shape[:2]
        flat, embed = pooled.permute(0, 2, 3, 1).reshape(batch, self.grid * self.grid, c), self.image_embed[t]
        if batch == 1:  # each hand's copy from its own add (TFLite's converter merges the two again)
            return torch.cat([flat + embed, flat + embed])
        tokens = flat + embed
        return torch.cat([tokens, tokens], dim=1).reshape(batch * 2, self.grid * self.grid, c)

    @staticmethod
    def _per_hand(table: torch.Tensor, batch: int) -> torch.Tensor:
        """A (2, n, c) per-hand table for (B*2, n, c) rows."""
        return table if batch == 1 else table.repeat(batch, 1, 1)

    def forward(self, hand_features: torch.Tensor, bound: list[torch.Tensor]) -> torch.Tensor:
        batch = hand_features.shape[0]
        x = self.init(hand_features).reshape(batch * 2, 1, -1) + self._per_hand(self.vertex_embed[0], batch)
        for t, block in enumerate(self.blocks):
            x = block(x, getattr(self, f"adjacency{t}"), self._image_tokens(bound[t], t))
            if t + 1 < len(self.blocks):
                rows, n, _ = x.shape
                children = self.widen[t](x).reshape(rows, 2 * n, -1)
                x = children + self._per_hand(self.vertex_embed[t + 1], batch)
        # hands back on their own axis before the head: a reshape after it would share the head's int8
        # output spec, which PT2E cannot resolve when the head alone stays float (`--keep-float`)
        return self.to_mesh(self.head(x.reshape(batch, 2, -1, x.shape[-1])))


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
    deployed.encoder, deployed.graph = encoder, DeployLinearGraph(model.graph)
    return deployed
