"""Linear Graph module (paper §3.3, eqs. 5-10): both hands' meshes from coarse to fine graphs.

Per level t (graphs of the active hand model, `lagchand_edge.hand.mesh_graph`):
  eqs. (5)-(6)  L'_f, R'_f = Di-Concat(Linear_GCN[Concat(L_f, R_f)]): one linear graph
                convolution (A_hat X W) with shared weights over the concatenated hands;
  eqs. (7)-(8)  H_h = Attention[Concat(h'_f, F_maps)]: multi-head self-attention of each
                hand's vertex tokens together with the bound map G_t as 8x8 image tokens;
  eqs. (9)-(10) HF_L = beta H_L + (1 - beta) H_R, HF_R = alpha H_R + (1 - alpha) H_L with
                learned alpha, beta (cross-hand injection);
then a binary-tree upsampling to the next level. The finest level regresses 3D points, mapped to
every mesh vertex by the hierarchy's fixed interpolation matrix (`SparseRows`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lagchand_edge.hand.mesh_graph import GraphHierarchy
from lagchand_edge.model.blocks import MultiHeadAttention
from lagchand_edge.model.config import LAGCHandConfig
from lagchand_edge.model.sparse import SparseRows


def _buffer(array) -> torch.Tensor:
    return torch.as_tensor(array, dtype=torch.float32)


class Int8Tables(nn.Module):
    """Learned tables (a ParameterList) stored as int8 codes with one fp32 scale per row.

    Indexing returns the dequantized fp32 table, so `LinearGraph.forward` reads it unchanged.
    For int8 artifacts: the vertex and image embeddings are added to activations, are no weight
    of any quantizable op, and would otherwise ship as fp32 (a fifth of an int8 artifact).
    """

    def __init__(self, tables: nn.ParameterList) -> None:
        super().__init__()
        self.count = len(tables)
        for i, table in enumerate(tables):
            table = table.detach().float()
            scale = table.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / 127
            self.register_buffer(f"codes{i}", torch.round(table / scale).to(torch.int8))
            self.register_buffer(f"scale{i}", scale)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> torch.Tensor:
        return getattr(self, f"codes{i}").to(torch.float32) * getattr(self, f"scale{i}")


class LinearGCN(nn.Module):
    """Residual linear graph convolution X + act(LN(A_hat X W)), shared by both hands."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(channels, channels)
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:  # x: (B, 2, n, c)
        # A_hat X as a linear layer over the node axis (A_hat is symmetric): int8 quantizers then
        # treat the constant graph like any weight, and every runtime runs it as a dense GEMM.
        propagated = F.linear(x.transpose(-1, -2), adjacency).transpose(-1, -2)
        return x + F.silu(self.norm(self.linear(propagated)))


class VertexImageAttention(nn.Module):
    """Eqs. (7)-(8): pre-norm MHSA over [vertex tokens ; image tokens], then an MLP; vertices kept."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.attn = MultiHeadAttention(channels, heads)
        self.mlp = nn.Sequential(nn.LayerNorm(channels), nn.Linear(channels, 2 * channels), nn.SiLU(), nn.Linear(2 * channels, channels))

    def forward(self, vertices: torch.Tensor, image: torch.Tensor) -> torch.Tensor:  # (B*2, n, c), (B*2, m, c)
        # only the vertex tokens are kept, so only they query: the image tokens are keys and values
        tokens = torch.cat([vertices, image], dim=1)
        out = vertices + self.attn(self.norm(tokens), queries=vertices.shape[1])
        return out + self.mlp(out)


class GraphLevelBlock(nn.Module):
    def __init__(self, channels: int, gcn_layers: int, heads: int) -> None:
        super().__init__()
        self.gcn = nn.ModuleList([LinearGCN(channels) for _ in range(gcn_layers)])
        self.attention = VertexImageAttention(channels, heads)
        self.alpha = nn.Parameter(torch.tensor(0.8))
        self.beta = nn.Parameter(torch.tensor(0.8))

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        batch, _, n, c = x.shape
        for gcn in self.gcn:
            x = gcn(x, adjacency)
        h = self.attention(x.reshape(batch * 2, n, c), image).reshape(batch, 2, n, c)
        h_left, h_right = h[:, 0:1], h[:, 1:2]  # slices, not selects: XNNPACK takes them
        left = self.beta * h_left + (1 - self.beta) * h_right
        right = self.alpha * h_right + (1 - self.alpha) * h_left
        return torch.cat([left, right], dim=1)


class LinearGraph(nn.Module):
    def __init__(self, cfg: LAGCHandConfig, graph: GraphHierarchy) -> None:
        super().__init__()
        channels = cfg.graph_channels
        sizes = [level.num_nodes for level in graph.levels]
        self.grid = cfg.image_grid
        for t, level in enumerate(graph.levels):
            self.register_buffer(f"adjacency{t}", _buffer(level.adjacency), persistent=False)
        self.to_mesh = SparseRows(graph.to_mesh)  # the fixed finest-level -> mesh interpolation
        self.init = nn.Linear(cfg.hand_dim, channels[0])
        self.vertex_embed = nn.ParameterList([nn.Parameter(torch.randn(2, n, c) * 0.02) for n, c in zip(sizes, channels, strict=True)])
        self.image_embed = nn.ParameterList([nn.Parameter(torch.randn(self.grid * self.grid, c) * 0.02) for c in channels])
        self.blocks = nn.ModuleList([GraphLevelBlock(c, cfg.gcn_layers, cfg.graph_heads) for c in channels])
        self.widen = nn.ModuleList([nn.Linear(a, b) for a, b in zip(channels[:-1], channels[1:], strict=True)])
        self.head = nn.Linear(channels[-1], 3)

    def int8_embeddings(self) -> None:
        """Store the vertex and image embeddings as `Int8Tables` (deploy-time, int8 artifacts)."""
        self.vertex_embed = Int8Tables(self.vertex_embed)
        self.image_embed = Int8Tables(self.image_embed)

    def _image_tokens(self, bound: torch.Tensor, t: int) -> torch.Tensor:
        """G_t pooled to a grid x grid map, as (B*2, grid^2, c) tokens shared by both hands."""
        factor = bound.shape[-1] // self.grid
        pooled = F.avg_pool2d(bound, factor) if factor > 1 else bound
        tokens = pooled.flatten(2).transpose(1, 2) + self.image_embed[t]
        batch, m, c = tokens.shape
        return torch.cat([tokens, tokens], dim=1).reshape(batch * 2, m, c)  # each sample twice, as repeat_interleave

    def forward(self, hand_features: torch.Tensor, bound: list[torch.Tensor]) -> torch.Tensor:
        """(B, 2, hand_dim) features and G_0..G_2 -> (B, 2, V, 3) mesh vertices."""
        x = self.init(hand_features)[:, :, None, :] + self.vertex_embed[0]
        for t, block in enumerate(self.blocks):
            x = block(x, getattr(self, f"adjacency{t}"), self._image_tokens(bound[t], t))
            if t + 1 < len(self.blocks):
                x = self.widen[t](self._children(x)) + self.vertex_embed[t + 1]
        return self.to_mesh(self.head(x))

    @staticmethod
    def _children(x: torch.Tensor) -> torch.Tensor:
        """Binary-tree upsampling: node i of a level feeds nodes 2i and 2i+1 of the next (a concat
        and a view; an expand would lower to a portable copy outside XNNPACK)."""
        b, hands, n, c = x.shape
        return torch.cat([x, x], dim=-1).reshape(b, hands, 2 * n, c)

