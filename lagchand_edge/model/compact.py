"""Compact Single Hand Heatmap Linear module (paper §3.2, eq. 4): F_maps, G = Hms_single[Out].

A small top-down decoder of 3x3 convolutions over the encoder's maps yields: a global feature,
left/right hand features, per-hand 2D joint heatmaps (the auxiliary loss) and the three "bound"
feature maps G_t (t = 0, 1, 2 at 8, 16, 32 px) that the Linear Graph blocks attend to.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lagchand_edge.model.blocks import ConvBNAct
from lagchand_edge.model.config import LAGCHandConfig


class CompactSingleHandHeatmap(nn.Module):
    def __init__(self, cfg: LAGCHandConfig, encoder_channels: list[int]) -> None:
        super().__init__()
        c64, c32, c16, c8 = encoder_channels[-4:]
        d8, d16, d32, d64 = cfg.decoder_channels
        self.top = ConvBNAct(c8, d8, 3)
        self.up16 = ConvBNAct(d8 + c16, d16, 3)
        self.up32 = ConvBNAct(d16 + c32, d32, 3)
        self.up64 = ConvBNAct(d32 + c64, d64, 3)
        self.heatmap = nn.Conv2d(d64, 2 * 21, 1)
        # The global feature keeps the 8x8 layout (squeeze to 16 channels, flatten): where each
        # hand is and how it is turned is spatial information an average pool would throw away.
        self.squeeze = ConvBNAct(d8, 16, 1)
        self.global_fc = nn.Sequential(nn.Linear(16 * (cfg.image_size // 32) ** 2, cfg.global_dim), nn.SiLU())
        self.hand_fc = nn.Linear(cfg.global_dim, 2 * cfg.hand_dim)
        g0, g1, g2 = cfg.graph_channels
        self.bound = nn.ModuleList([ConvBNAct(d8 + c8, g0, 1), ConvBNAct(d16 + c16, g1, 1), ConvBNAct(d32 + c32, g2, 1)])
        self.hand_dim = cfg.hand_dim

    def forward(self, features: list[torch.Tensor], with_heatmaps: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
        """`with_heatmaps=False` (inference) skips the 64 px stage and heatmap head: the heatmaps
        are a training target only, and eager PyTorch would otherwise compute them (0.11 of 0.78 GMACs)."""
        f64, f32, f16, f8 = features
        x8 = self.top(f8)
        x16 = self.up16(torch.cat([F.interpolate(x8, scale_factor=2.0, mode="nearest"), f16], 1))
        x32 = self.up32(torch.cat([F.interpolate(x16, scale_factor=2.0, mode="nearest"), f32], 1))
        heatmaps = None
        if with_heatmaps:
            x64 = self.up64(torch.cat([F.interpolate(x32, scale_factor=2.0, mode="nearest"), f64], 1))
            heatmaps = self.heatmap(x64)
            heatmaps = heatmaps.reshape(heatmaps.shape[0], 2, 21, heatmaps.shape[-2], heatmaps.shape[-1])
        global_feature = self.global_fc(self.squeeze(x8).flatten(1))
        hand_features = self.hand_fc(global_feature).reshape(-1, 2, self.hand_dim)
        bound = [layer(torch.cat(pair, 1)) for layer, pair in zip(self.bound, ((x8, f8), (x16, f16), (x32, f32)), strict=True)]
        return global_feature, hand_features, bound, heatmaps
