"""Reusable layers: conv-BN-act, MobileNetV2 blocks, 2D layer norm, the two attention kinds.

Tokens inside transformers use MobileViT's (B, d, P, N) layout (P pixels per patch, N patches),
so projections are 1x1 convolutions and every tensor stays rank <= 5 (CoreML's limit).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.SiLU() if act else nn.Identity(),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2 block (MobileViT's "MV2"): expand 1x1, depth-wise 3x3, project 1x1."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.block = nn.Sequential(
            ConvBNAct(cin, hidden, 1),
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden),
            ConvBNAct(hidden, cout, 1, act=False),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class LayerNorm2d(nn.Module):
    """GroupNorm(1): layer norm over (C, P, N), then a per-channel affine.

    One `layer_norm` op, not mean/var/rsqrt written out: int8 quantizers leave it in float,
    where the written-out form had them quantize the variance (CoreML's W8A8 rounded it to 0,
    rsqrt(0) = inf, NaN) and the squares (a large share of ExecuTorch's int8 drift).
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[1:], eps=self.eps) * self.weight + self.bias


class SeparableSelfAttention(nn.Module):
    """MobileViTv2's linear attention: one score per token, softmax over tokens, a context vector.

    context = sum_n softmax(q)_n k_n ;  y = proj(ReLU(v) * context). Cost is linear in tokens.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.qkv = nn.Conv2d(dim, 1 + 2 * dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, d, P, N)
        # torch.split (a portable copy), not channel slices: ExecuTorch 1.5.1's XNNPACK delegate
        # computes channel slices of this conv output wrongly (the fp32 parity tests catch it)
        q, k, v = torch.split(self.qkv(x), [1, self.dim, self.dim], dim=1)
        scores = torch.softmax(q, dim=-1)
        context = (k * scores).sum(dim=-1, keepdim=True)
        return self.proj(torch.relu(v) * context)


class MultiHeadAttention(nn.Module):
    """Plain multi-head self-attention over (B, T, C) tokens, written with matmul + softmax."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, queries: int | None = None) -> torch.Tensor:
        """Outputs for the first `queries` tokens (default all); every token is a key and value."""
        batch, tokens, dim = x.shape
        rows = tokens if queries is None else queries
        qkv = self.qkv(x)
        # Slices and 3-D bmm, not 5-D select + broadcast matmul: the latter lower to portable
        # select/expand copies outside XNNPACK (milliseconds per inference on a phone).
        q = self._heads(qkv[:, :rows, :dim])
        k, v = (self._heads(qkv[..., i * dim : (i + 1) * dim]) for i in (1, 2))
        attn = torch.softmax(torch.bmm(q * self.head_dim**-0.5, k.transpose(1, 2)), dim=-1)
        out = torch.bmm(attn, v).reshape(batch, self.heads, rows, self.head_dim)
        return self.proj(out.transpose(1, 2).reshape(batch, rows, dim))

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B * heads, T, head_dim)."""
        batch, tokens, _ = t.shape
        return t.reshape(batch, tokens, self.heads, self.head_dim).transpose(1, 2).reshape(batch * self.heads, tokens, self.head_dim)


class PatchTransformer(nn.Module):
    """Pre-norm transformer layer on (B, d, P, N) tokens, with either attention kind.

    'linear': MobileViTv2 separable attention with GroupNorm(1) (LAGCHand's choice);
    'mhsa': ordinary multi-head attention over each patch position's N tokens (MobileViTv3-XXS
    as published) with LayerNorm.
    """

    def __init__(self, dim: int, ffn: int, attention: str, heads: int = 4) -> None:
        super().__init__()
        self.kind = attention
        if attention == "linear":
            self.norm1, self.norm2 = LayerNorm2d(dim), LayerNorm2d(dim)
            self.attn = SeparableSelfAttention(dim)
        elif attention == "mhsa":
            self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.attn = MultiHeadAttention(dim, heads)
        else:
            raise ValueError(f"unknown attention {attention!r}; choose 'linear' or 'mhsa'")
        self.ffn = nn.Sequential(nn.Conv2d(dim, ffn, 1), nn.SiLU(), nn.Conv2d(ffn, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "linear":
            x = x + self.attn(self.norm1(x))
            return x + self.ffn(self.norm2(x))
        batch, dim, patch, tokens = x.shape
        seq = x.permute(0, 2, 3, 1).reshape(batch * patch, tokens, dim)
        seq = seq + self.attn(self.norm1(seq))
        x = seq.reshape(batch, patch, tokens, dim).permute(0, 3, 1, 2)
        y = self.norm2(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x + self.ffn(y)


def unfold_patches(x: torch.Tensor, patch: int = 2) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, patch*patch, N) without rank-6 tensors."""
    b, c, h, w = x.shape
    y = x.reshape(b * c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3)
    return y.reshape(b, c, patch * patch, (h // patch) * (w // patch))


def fold_patches(x: torch.Tensor, h: int, w: int, patch: int = 2) -> torch.Tensor:
    """Inverse of `unfold_patches`."""
    b, c = x.shape[:2]
    y = x.reshape(b * c, patch, patch, h // patch, w // patch).permute(0, 3, 1, 4, 2)
    return y.reshape(b, c, h, w)
