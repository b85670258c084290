"""A small vectorised z-buffer rasteriser (numpy, CPU, headless) for the synthetic data.

Every triangle's bounding box is expanded into candidate pixels at once, barycentric
coordinates decide coverage, perspective-correct depth decides visibility, and smooth Lambert +
Blinn shading with per-vertex colour gives the picture. No GL, no display.
"""

from __future__ import annotations

import numpy as np


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals of a triangle mesh."""
    v0, v1, v2 = (vertices[faces[:, i]] for i in range(3))
    face_normals = np.cross(v1 - v0, v2 - v0)
    normals = np.zeros_like(vertices)
    for i in range(3):
        np.add.at(normals, faces[:, i], face_normals)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def rasterize(
    vertices_cam: np.ndarray, faces: np.ndarray, k: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Visible face id (-1 = none), depth and barycentrics per pixel for a camera-space mesh.

    Back faces (facing away from the camera at the origin) are culled: meshes are closed.
    """
    z = vertices_cam[:, 2]
    xy = vertices_cam[:, :2] / np.maximum(z, 1e-6)[:, None] * np.array([k[0, 0], k[1, 1]]) + k[:2, 2]
    tri = xy[faces]  # (F, 3, 2)
    v0, v1, v2 = (vertices_cam[faces[:, i]] for i in range(3))
    facing = np.einsum("fc,fc->f", np.cross(v1 - v0, v2 - v0), v0) < 0
    in_front = (z[faces] > 1e-3).all(1)
    keep = np.flatnonzero(facing & in_front)
    tri = tri[keep]
    lo = np.clip(np.floor(tri.min(1) - 0.5).astype(np.int64), 0, [width - 1, height - 1])
    hi = np.clip(np.ceil(tri.max(1) - 0.5).astype(np.int64), 0, [width - 1, height - 1])
    size = hi - lo + 1
    area = size[:, 0] * size[:, 1]
    valid = (tri.max(1) >= 0).all(1) & (tri.min(1) <= [width, height]).all(1)
    area = np.where(valid, area, 0)
    owner = np.repeat(np.arange(len(keep)), area)
    local = np.arange(owner.size) - np.repeat(np.cumsum(area) - area, area)
    px = lo[owner, 0] + local % size[owner, 0]
    py = lo[owner, 1] + local // size[owner, 0]
    p = np.stack([px + 0.5, py + 0.5], axis=1)
    a, b, c = tri[owner, 0], tri[owner, 1], tri[owner, 2]
    denom = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    denom = np.where(np.abs(denom) < 1e-12, 1e-12, denom)
    w1 = ((p[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (p[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])) / denom
    w2 = ((b[:, 0] - a[:, 0]) * (p[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (p[:, 0] - a[:, 0])) / denom
    w0 = 1 - w1 - w2
    inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
    owner, px, py = owner[inside], px[inside], py[inside]
    bary = np.stack([w0[inside], w1[inside], w2[inside]], axis=1)
    inv_z = (bary / z[faces[keep[owner]]]).sum(1)
    depth = 1.0 / inv_z
    bary = bary / z[faces[keep[owner]]] * depth[:, None]  # perspective-correct
    pixel = py * width + px
    order = np.lexsort((depth, pixel))
    first = order[np.unique(pixel[order], return_index=True)[1]]
    face_id = -np.ones(width * height, dtype=np.int64)
    depth_map = np.full(width * height, np.inf)
    bary_map = np.zeros((width * height, 3))
    face_id[pixel[first]] = keep[owner[first]]
    depth_map[pixel[first]] = depth[first]
    bary_map[pixel[first]] = bary[first]
    return face_id.reshape(height, width), depth_map.reshape(height, width), bary_map.reshape(height, width, 3)


def shade(
    vertices_cam: np.ndarray,
    faces: np.ndarray,
    colors: np.ndarray,
    face_id: np.ndarray,
    bary: np.ndarray,
    light_dir: np.ndarray,
    ambient: float,
    specular: float = 0.15,
) -> tuple[np.ndarray, np.ndarray]:
    """RGB in [0, 1] (H, W, 3) and coverage mask for rasterised pixels (Lambert + Blinn)."""
    mask = face_id >= 0
    normals = vertex_normals(vertices_cam, faces)
    ids = faces[face_id[mask]]  # (P, 3)
    w = bary[mask][:, :, None]
    normal = (normals[ids] * w).sum(1)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    position = (vertices_cam[ids] * w).sum(1)
    albedo = (colors[ids] * w).sum(1)
    light = light_dir / np.linalg.norm(light_dir)
    diffuse = np.clip(normal @ light, 0.0, 1.0)
    view = -position / np.maximum(np.linalg.norm(position, axis=1, keepdims=True), 1e-9)
    half = view + light
    half /= np.maximum(np.linalg.norm(half, axis=1, keepdims=True), 1e-9)
    spec = np.clip((normal * half).sum(1), 0.0, 1.0) ** 24 * specular
    image = np.zeros(face_id.shape + (3,))
    image[mask] = np.clip(albedo * (ambient + (1 - ambient) * diffuse[:, None]) + spec[:, None], 0, 1)
    return image, mask
