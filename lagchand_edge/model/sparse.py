"""A fixed sparse matrix applied as a gather and a weighted sum (sparse tensors lower nowhere)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class SparseRows(nn.Module):
    """y = M x over the node axis of (B, H, N, C) tensors, for a constant M with few non-zeros per row.

    M is (R, N), shared by the H groups, or (H, R, N), one per group (a hand). Each row keeps its
    k largest entries as (index, weight) pairs, k the most non-zeros of any row: the mesh
    interpolation (<= 4 of ~400) and the joint regressor (<= 14 of ~780) ship a few kB instead of
    a dense matrix that is mostly zeros, and every runtime runs a gather, a multiply and a sum.
    """

    def __init__(self, matrix: np.ndarray) -> None:
        super().__init__()
        matrix = np.asarray(matrix)
        self.shared = matrix.ndim == 2
        stacked = matrix[None] if self.shared else matrix
        groups, rows, columns = stacked.shape
        k = max(int((stacked != 0).sum(-1).max()), 1)
        order = np.argsort(-np.abs(stacked), axis=-1, kind="stable")[..., :k]
        # one flat index: into the node axis when shared, into (group, node) pairs otherwise
        offsets = 0 if self.shared else np.arange(groups)[:, None, None] * columns
        self.register_buffer("index", torch.as_tensor((order + offsets).reshape(-1), dtype=torch.long), persistent=False)
        self.register_buffer("weight", torch.as_tensor(np.take_along_axis(stacked, order, -1), dtype=torch.float32), persistent=False)
        self.rows, self.k = rows, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, groups, nodes, channels = x.shape
        if self.shared:
            picked = torch.index_select(x, 2, self.index)
            weight = self.weight[0]
        else:
            picked = torch.index_select(x.reshape(batch, groups * nodes, channels), 1, self.index)
            weight = self.weight
        picked = picked.reshape(batch, groups, self.rows, self.k, channels)
        return (picked * weight[..., None]).sum(dim=3)

