"""Coarse-to-fine graphs over a hand mesh, for the Linear Graph decoder (IntagHand-style).

The mesh graph is coarsened by heavy-edge matching (Graclus, as IntagHand's `coarsening.py`
does), then nodes are re-ordered as a padded binary tree so that each coarse node owns exactly
two nodes of the next finer level (fake nodes pad where a node had no partner). Every matrix is
dense: sparse matmul lowers in none of the edge runtimes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lagchand_edge.hand.skinned import HandModel


@dataclass(frozen=True)
class GraphLevel:
    """One decoder level: normalised adjacency (n, n), rest positions (n, 3), real-node mask (n,)."""

    adjacency: np.ndarray
    positions: np.ndarray
    real: np.ndarray

    @property
    def num_nodes(self) -> int:
        return self.adjacency.shape[0]


@dataclass(frozen=True)
class GraphHierarchy:
    """Decoder graphs from coarse to fine; `upsample[k]` maps level k to k+1, `to_mesh` the last to V."""

    levels: tuple[GraphLevel, ...]
    upsample: tuple[np.ndarray, ...]
    to_mesh: np.ndarray


def mesh_adjacency(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """Symmetric 0/1 adjacency of a triangle mesh's edges."""
    adjacency = np.zeros((num_vertices, num_vertices))
    for a, b in ((0, 1), (1, 2), (2, 0)):
        adjacency[faces[:, a], faces[:, b]] = 1.0
        adjacency[faces[:, b], faces[:, a]] = 1.0
    return adjacency


def heavy_edge_matching(weights: np.ndarray) -> np.ndarray:
    """One Graclus level: cluster id per node, pairing each node with its heaviest free neighbour."""
    n = weights.shape[0]
    degree = weights.sum(1)
    safe = np.where(degree > 0, degree, 1.0)
    cluster = -np.ones(n, dtype=np.int64)
    next_id = 0
    for i in np.argsort(degree, kind="stable"):
        if cluster[i] >= 0:
            continue
        cluster[i] = next_id
        neighbours = np.flatnonzero((weights[i] > 0) & (cluster < 0))
        if neighbours.size:
            score = weights[i, neighbours] * (1.0 / safe[i] + 1.0 / safe[neighbours])
            cluster[neighbours[np.argmax(score)]] = next_id
        next_id += 1
    return cluster


def _coarsen(weights: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    n = cluster.max() + 1
    assign = np.zeros((weights.shape[0], n))
    assign[np.arange(len(cluster)), cluster] = 1.0
    coarse = assign.T @ weights @ assign
    np.fill_diagonal(coarse, 0.0)
    return coarse


def _normalised(adjacency: np.ndarray) -> np.ndarray:
    """D^-1/2 (A + I) D^-1/2: the GCN propagation matrix (fake nodes keep only a self-loop)."""
    a = (adjacency > 0).astype(np.float64) + np.eye(len(adjacency))
    d = 1.0 / np.sqrt(a.sum(1))
    return a * d[:, None] * d[None, :]


def _interpolation(template: np.ndarray, finest: GraphLevel, neighbours: int, ridge: float = 1e-5) -> np.ndarray:
    """(V, n) weights that rebuild every rest vertex from its nearest real nodes.

    Each row sums to one (so rigid motions carry over) and reproduces the rest vertex almost
    exactly: least squares over the `neighbours` nearest node positions, pulled towards
    inverse-distance weights by a small ridge so that near-degenerate neighbourhoods stay tame.
    """
    real_ids = np.flatnonzero(finest.real)
    nodes = finest.positions[real_ids]
    distance = np.linalg.norm(template[:, None, :] - nodes[None], axis=-1)
    nearest = np.argsort(distance, axis=1)[:, :neighbours]
    weights = np.zeros((len(template), finest.num_nodes))
    for v, ids in enumerate(nearest):
        points = nodes[ids]  # (k, 3)
        prior = 1.0 / np.maximum(distance[v, ids], 1e-4) ** 2
        prior /= prior.sum()
        # minimise |points^T w - x|^2 + ridge |w - prior|^2 subject to sum(w) = 1 (KKT system)
        k = len(ids)
        system = np.zeros((k + 1, k + 1))
        system[:k, :k] = points @ points.T + ridge * np.eye(k)
        system[:k, k] = system[k, :k] = 1.0
        rhs = np.concatenate([points @ template[v] + ridge * prior, [1.0]])
        weights[v, real_ids[ids]] = np.linalg.solve(system, rhs)[:k]
    return weights


def build_hierarchy(hand: HandModel, depth: int = 4, decoder_levels: int = 3, neighbours: int = 4) -> GraphHierarchy:
    """Coarsen `depth` times and keep the `decoder_levels` coarsest-but-one levels for the decoder.

    With MANO-sized meshes (~780 vertices) and depth 4 the decoder sees ~100, ~200, ~400 nodes per
    hand; the finest decoder level is mapped to all mesh vertices by fixed affine weights over
    its `neighbours` nearest real nodes (see `_interpolation`).
    """
    weights = [mesh_adjacency(hand.faces, hand.num_vertices)]
    clusters = []
    for _ in range(depth):
        clusters.append(heavy_edge_matching(weights[-1]))
        weights.append(_coarsen(weights[-1], clusters[-1]))

    # Binary-tree order, coarsest first: order[l] lists level-l node ids, -1 for fake nodes.
    orders = [np.arange(weights[depth].shape[0])]
    for level in range(depth - 1, -1, -1):
        children: dict[int, list[int]] = {}
        for node, parent in enumerate(clusters[level]):
            children.setdefault(int(parent), []).append(node)
        finer = []
        for parent in orders[-1]:
            kids = children.get(int(parent), []) if parent >= 0 else []
            finer.extend(kids + [-1] * (2 - len(kids)))
        orders.append(np.array(finer))
    orders = orders[::-1]  # orders[l] now matches weights[l]

    # Rest positions of each real node: mean of the mesh vertices below it.
    members = [np.eye(hand.num_vertices)]
    for level in range(depth):
        assign = np.zeros((len(clusters[level]), clusters[level].max() + 1))
        assign[np.arange(len(clusters[level])), clusters[level]] = 1.0
        members.append(members[-1] @ assign)

    def level_graph(level: int) -> GraphLevel:
        order = orders[level]
        real = order >= 0
        adjacency = np.zeros((len(order), len(order)))
        ids = order[real]
        adjacency[np.ix_(real, real)] = weights[level][np.ix_(ids, ids)]
        counts = members[level][:, ids].sum(0)
        positions = np.zeros((len(order), 3))
        positions[real] = (members[level][:, ids].T @ hand.template) / counts[:, None]
        return GraphLevel(_normalised(adjacency), positions, real)

    chosen = list(range(decoder_levels, 0, -1))  # e.g. levels 3, 2, 1 (coarse -> fine)
    levels = tuple(level_graph(level) for level in chosen)
    upsample = tuple(
        np.repeat(np.eye(coarse.num_nodes), 2, axis=0) for coarse in levels[:-1]
    )
    to_mesh = _interpolation(hand.template, levels[-1], neighbours)
    return GraphHierarchy(levels=levels, upsample=upsample, to_mesh=to_mesh)
