"""How a synthetic capture looks: skin, forearms and sleeves, the torso, the studio, the lens.

Each function draws from the sample's own generator, so a picture is reproducible per (seed,
index). Everything is numpy and PIL on the CPU; nothing here decides geometry that the
annotations describe (that is `scene.py`), only what the camera sees around it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from lagchand_edge.data.render import vertex_normals
from lagchand_edge.data.scene import Arm, Scene, to_camera
from lagchand_edge.hand import HandModel
from lagchand_edge.hand.joints import FINGERS, MANO_JOINT_NAMES
from lagchand_edge.hand.procedural import tube_faces

SKIN_TONES = np.array(
    [[0.96, 0.80, 0.69], [0.92, 0.72, 0.58], [0.84, 0.62, 0.48], [0.71, 0.49, 0.36], [0.55, 0.37, 0.26], [0.38, 0.25, 0.17]]
)
PALM_TINT = np.array([0.97, 0.76, 0.70])  # palms are lighter and pinker than the back at every skin tone
NAIL_TINT = np.array([0.97, 0.85, 0.83])
STUDIO_SHARE = 0.55  # dark capture dome with its lights (the release) vs a cluttered room
ARM_AROUND, ARM_RINGS = 12, 6
WRIST_HALF_M, ELBOW_HALF_M = (0.026, 0.017), (0.04, 0.035)  # forearm cross-section half-axes (width, thickness)


def skin_albedo(hand: HandModel, skin: np.ndarray) -> np.ndarray:
    """Per-vertex colour (V, 3): lighter palm, slightly darker back, nails on the fingertips.

    Real hands show which side faces the camera through these cues; an evenly coloured mesh
    leaves palm-versus-back (and so the hand's orientation and side) to silhouette and shading.
    Sides are read from the rest mesh, whose back faces +z for both hands.
    """
    normal_z = vertex_normals(hand.template, hand.faces)[:, 2]
    back = np.clip((normal_z + 0.3) / 0.6, 0.0, 1.0)[:, None]
    palm = 0.45 * skin + 0.55 * PALM_TINT
    colour = back * skin * 0.9 + (1 - back) * palm
    tips = [MANO_JOINT_NAMES.index(f"{finger}3") for finger in FINGERS]
    nail = (hand.skin_weights[:, tips].max(1) > 0.99) & (normal_z > 0.35)
    colour[nail] = 0.3 * skin + 0.7 * NAIL_TINT
    return colour


def _tube(start: np.ndarray, end: np.ndarray, axis: np.ndarray, half_start: tuple, half_end: tuple) -> tuple[np.ndarray, np.ndarray]:
    """A closed elliptic tube from `start` to `end` (world), its width along `axis`; vertices and faces."""
    direction = (end - start) / np.linalg.norm(end - start)
    e1 = axis - (axis @ direction) * direction
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(direction, e1)
    t = np.linspace(0.0, 1.0, ARM_RINGS)[:, None, None]
    theta = np.linspace(0, 2 * np.pi, ARM_AROUND, endpoint=False)[None, :, None]
    half = np.array(half_start)[None, None, :] * (1 - t) + np.array(half_end)[None, None, :] * t
    rings = start + t * (end - start) + half[..., :1] * np.cos(theta) * e1 + half[..., 1:] * np.sin(theta) * e2
    vertices = np.concatenate([rings.reshape(-1, 3), [start, end]])
    return vertices, tube_faces(0, ARM_RINGS, ARM_AROUND)


def arm_meshes(arm: Arm, size: float) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """The forearm (from inside the palm to the elbow) and, where worn, its sleeve: (vertices, faces, part)."""
    fingers, width_axis = arm.hand_rotation[:, 1], arm.hand_rotation[:, 0]
    start = arm.wrist + fingers * 0.012 * size
    wrist_half = tuple(np.array(WRIST_HALF_M) * size)
    meshes = [(*_tube(start, arm.elbow, width_axis, wrist_half, ELBOW_HALF_M), "skin")]
    if arm.sleeve > 0.05:
        cuff = arm.elbow + (start - arm.elbow) * arm.sleeve
        beyond = arm.elbow + (arm.elbow - start) * 0.4
        at_cuff = np.array(wrist_half) * arm.sleeve + np.array(ELBOW_HALF_M) * (1 - arm.sleeve)
        meshes.append((*_tube(cuff, beyond, width_axis, tuple(at_cuff * 1.35 + 0.004), (0.06, 0.055)), "sleeve"))
    return meshes


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex hull (monotone chain) of 2D points, counter-clockwise."""
    pts = sorted(map(tuple, points))

    def turn(o, a, b) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    def half(seq):
        out: list = []
        for p in seq:
            while len(out) >= 2 and turn(out[-2], out[-1], p) <= 0:
                out.pop()
            out.append(p)
        return out[:-1]

    return np.array(half(pts) + half(pts[::-1]))


def _studio(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """The capture dome seen past the subject: near-black, a few bright lights with a glow."""
    level = rng.uniform(0.0, 0.06) * (1 + rng.normal(0, 0.1, 3))
    image = np.ones((height, width, 3)) * level
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(rng.integers(0, 7)):
        x, y, radius = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(1.0, 3.0) * width / 256
        glow = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * (radius * 2.5) ** 2))
        image += glow[..., None] * np.array([1.0, rng.uniform(0.85, 1.0), rng.uniform(0.7, 1.0)])
    return Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))


def _clutter(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A cluttered, photo-like room: smooth colour field, shapes, stripes."""
    grid = rng.uniform(0, 255, size=(rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.uint8)
    image = Image.fromarray(grid).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(2, 9)):
        box = sorted(rng.uniform(-0.2, 1.2, 2) * width), sorted(rng.uniform(-0.2, 1.2, 2) * height)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = (box[0][0], box[1][0], box[0][1], box[1][1])
        (draw.ellipse if rng.uniform() < 0.5 else draw.rectangle)(shape, fill=colour)
    if rng.uniform() < 0.3:  # a striped fabric or tiles in one colour
        period, colour = int(rng.integers(6, 30)), tuple(int(c) for c in rng.integers(0, 256, 3))
        for x in range(0, width + height, period * 2):
            draw.line([(x, 0), (x - height, height)], fill=colour, width=period // 2)
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 3.0)))


def _torso(rng: np.random.Generator, image: Image.Image, scene: Scene, k: np.ndarray, shirt: np.ndarray) -> None:
    """Paint the subject's torso (the scene's box, projected) behind the hands: shirt colour,
    shaded darker towards its sides, plain, striped or printed."""
    corners = to_camera(scene, scene.torso)
    if (corners[:, 2] < 0.05).any():
        return
    uv = corners[:, :2] / corners[:, 2:3] * np.array([k[0, 0], k[1, 1]]) + k[:2, 2]
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).polygon([tuple(p) for p in _hull(uv)], fill=255)
    width, height = image.size
    xx = np.arange(width)[None, :]
    centre, spread = uv[:, 0].mean(), max(np.ptp(uv[:, 0]) / 2, 1.0)
    shading = 1.0 - 0.45 * np.clip(np.abs(xx - centre) / spread, 0, 1) ** 2
    cloth = np.ones((height, width, 3)) * shirt * shading[..., None]
    cloth *= 1 + rng.normal(0, 0.04, (height, width, 1))
    pattern = rng.uniform()
    if pattern < 0.3:  # stripes
        period = rng.uniform(6, 20) * width / 256
        stripes = (np.mgrid[0:height, 0:width][0] % period) < period / 2
        cloth[stripes] *= rng.uniform(0.5, 0.8)
    elif pattern < 0.55:  # a printed logo
        logo = Image.new("L", image.size, 0)
        x, y, r = rng.uniform(0, width), rng.uniform(0, height / 2), rng.uniform(8, 30) * width / 256
        ImageDraw.Draw(logo).ellipse([x - r, y - r * 0.6, x + r, y + r * 0.6], fill=255)
        cloth[np.asarray(logo) > 0] = rng.uniform(0, 1, 3)
    image.paste(Image.fromarray((np.clip(cloth, 0, 1) * 255).astype(np.uint8)), (0, 0), mask)


def backdrop(rng: np.random.Generator, scene: Scene, k: np.ndarray, size: tuple[int, int], shirt: np.ndarray) -> np.ndarray:
    """Everything behind the hands and arms, as floats in [0, 1]."""
    width, height = size
    image = _studio(rng, width, height) if rng.uniform() < STUDIO_SHARE else _clutter(rng, width, height)
    if rng.uniform() < 0.9:
        _torso(rng, image, scene, k, shirt)
    return np.asarray(image, dtype=np.float64) / 255.0


def skin_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A multiplicative (H, W, 1) field of blotches and pores around 1."""
    coarse = Image.fromarray(rng.normal(0, 1, (12, 12)).astype(np.float32)).resize((width, height), Image.BICUBIC)
    fine = Image.fromarray(rng.normal(0, 1, (64, 64)).astype(np.float32)).resize((width, height), Image.BILINEAR)
    return (1 + 0.06 * np.asarray(coarse) + 0.03 * np.asarray(fine))[..., None]


def lens(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """What a camera adds: sensor noise, sometimes motion blur or defocus (uint8 out)."""
    image = image + rng.normal(0, rng.uniform(0.005, 0.02), image.shape)
    picture = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
    blur = rng.uniform()
    if blur < 0.15:  # motion: a short line kernel at a random angle
        kernel = np.zeros((5, 5))
        angle, length = rng.uniform(0, np.pi), rng.uniform(1.5, 2.5)
        for s in np.linspace(-length, length, 9):
            kernel[int(round(2 + s * np.sin(angle))), int(round(2 + s * np.cos(angle)))] += 1
        picture = picture.filter(ImageFilter.Kernel((5, 5), (kernel / kernel.sum()).ravel().tolist(), 1))
    elif blur < 0.3:
        picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.1)))
    return np.asarray(picture)
