"""Linear Attention Encoder (paper §3.1, eqs. 1-3): MobileViTv3-XXS with linear attention."""

from __future__ import annotations

import torch
from torch import nn

from lagchand_edge.model.blocks import ConvBNAct, InvertedResidual, PatchTransformer, fold_patches, unfold_patches
from lagchand_edge.model.config import EncoderConfig


class MobileViTv3Block(nn.Module):
    """Eqs. (1)-(3): TC(x) = Trans(CNN_dw(X)); T(x) = Concat(TC(x), CNN_dw(X)); Out = fuse(T) + X.

    Local representation: depth-wise 3x3 then 1x1 to the transformer width; global
    representation: transformers over unfolded 2x2 patches, folded back and projected by 1x1;
    fusion: 1x1 over concat(local, global), plus the block's input (MobileViTv3).
    """

    def __init__(self, channels: int, dim: int, ffn: int, depth: int, attention: str) -> None:
        super().__init__()
        self.local = nn.Sequential(
            ConvBNAct(channels, channels, 3, groups=channels),
            nn.Conv2d(channels, dim, 1, bias=False),
        )
        self.transformers = nn.Sequential(*[PatchTransformer(dim, ffn, attention) for _ in range(depth)])
        self.project = ConvBNAct(dim, channels, 1)
        self.fuse = ConvBNAct(dim + channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.local(x)
        h, w = x.shape[-2:]
        global_rep = fold_patches(self.transformers(unfold_patches(local)), h, w)
        return self.fuse(torch.cat([local, self.project(global_rep)], dim=1)) + x


class LinearAttentionEncoder(nn.Module):
    """MobileViTv3-XXS backbone. Returns feature maps at strides 4, 8, 16, 32 (64..8 px at 256)."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.stem = ConvBNAct(3, cfg.stem, 3, 2)
        layers, cin = [], cfg.stem
        for stage in cfg.stages:
            blocks: list[nn.Module] = []
            for i in range(stage.mv2_blocks):
                blocks.append(InvertedResidual(cin, stage.channels, stage.stride if i == 0 else 1, cfg.expand))
                cin = stage.channels
            if stage.depth:
                blocks.append(MobileViTv3Block(cin, stage.dim, stage.ffn, stage.depth, cfg.attention))
            layers.append(nn.Sequential(*blocks))
        self.layers = nn.ModuleList(layers)
        self.out_channels = [s.channels for s in cfg.stages]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features[1:]  # strides 4, 8, 16, 32
