"""`ProceduralHand`: a built-in, deterministic hand mesh with MANO's interface.

It exists so that defaults, tests and synthetic data need no licensed MANO files. The mesh is a
union of closed surfaces (a rounded palm and five tubes with rounded tips), 780 vertices and
1536 faces, close to MANO's 778 / 1538. Joints sit at ring centres, so the joint regressor is a
plain ring average, as MANO's is a vertex average. Shape coefficients are the linearised effect
of ten anatomical parameters (size, finger length, thickness, palm width, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lagchand_edge.hand.joints import FINGERS, MANO_JOINT_NAMES, MANO_TO_INTERHAND
from lagchand_edge.hand.skinned import HandModel

AROUND = 10  # vertices per finger ring
PALM_AROUND = 14
PALM_RINGS = 12
BLEND = 0.006  # metres either side of a joint over which skin weights cross-fade
BASE_INSET = 0.012  # finger tubes start this far inside the palm


@dataclass(frozen=True)
class _Finger:
    base: tuple[float, float, float]  # first joint (MCP; CMC for the thumb), metres, right hand
    direction: tuple[float, float, float]
    lengths: tuple[float, float, float]  # joint1->joint2, joint2->joint3, joint3->tip
    radii: tuple[float, float, float]


# Right hand, wrist near the origin, fingers along +y, back of the hand +z, thumb on -x.
_FINGERS: dict[str, _Finger] = {
    "thumb": _Finger((-0.024, 0.024, -0.006), (-0.62, 0.74, -0.26), (0.040, 0.032, 0.027), (0.0125, 0.0105, 0.0092)),
    "index": _Finger((-0.026, 0.090, 0.0), (-0.07, 1.0, 0.0), (0.039, 0.023, 0.022), (0.0094, 0.0084, 0.0075)),
    "middle": _Finger((-0.005, 0.095, 0.0), (0.0, 1.0, 0.0), (0.044, 0.027, 0.024), (0.0097, 0.0087, 0.0078)),
    "ring": _Finger((0.015, 0.090, 0.0), (0.07, 1.0, 0.0), (0.041, 0.026, 0.023), (0.0091, 0.0082, 0.0073)),
    "pinky": _Finger((0.033, 0.080, 0.0), (0.15, 1.0, 0.0), (0.031, 0.020, 0.020), (0.0081, 0.0073, 0.0066)),
}
_PALM_CENTRE = np.array([0.003, 0.050, 0.0])
_PALM_HALF = np.array([0.045, 0.054, 0.0135])

#: What each shape coefficient changes (relative change per unit coefficient).
SHAPE_EFFECTS: tuple[tuple[str, float], ...] = (
    ("overall size", 0.06),
    ("finger length", 0.05),
    ("thickness", 0.08),
    ("palm width", 0.05),
    ("palm length", 0.04),
    ("thumb length", 0.06),
    ("index length", 0.04),
    ("middle length", 0.04),
    ("ring length", 0.04),
    ("pinky length", 0.04),
)


def _spow(x: np.ndarray, e: float) -> np.ndarray:
    return np.sign(x) * np.abs(x) ** e


def _frame(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors e1, e2 with e1 x e2 = direction; e2 points towards the back (+z)."""
    e1 = np.cross(direction, np.array([0.0, 0.0, 1.0]))
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(direction, e1)
    return e1, e2


def tube_faces(start: int, rings: int, around: int) -> np.ndarray:
    """Faces of a closed tube: `rings` rings of `around` vertices, then base pole and tip pole."""
    faces = []
    ring = lambda i, a: start + i * around + (a % around)  # noqa: E731
    for i in range(rings - 1):
        for a in range(around):
            faces.append((ring(i, a), ring(i, a + 1), ring(i + 1, a + 1)))
            faces.append((ring(i, a), ring(i + 1, a + 1), ring(i + 1, a)))
    base_pole, tip_pole = start + rings * around, start + rings * around + 1
    for a in range(around):
        faces.append((base_pole, ring(0, a + 1), ring(0, a)))
        faces.append((tip_pole, ring(rings - 1, a), ring(rings - 1, a + 1)))
    return np.array(faces, dtype=np.int64)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


class _Builder:
    """Builds vertex positions for one set of anatomical parameters (topology never changes)."""

    def __init__(self, beta: np.ndarray) -> None:
        effect = 1.0 + np.array([e for _, e in SHAPE_EFFECTS]) * beta
        self.size, self.finger_len, self.thick, self.palm_w, self.palm_l, self.thumb_len = effect[:6]
        self.per_finger = dict(zip(FINGERS[1:], effect[6:], strict=True))

    def palm(self) -> np.ndarray:
        half = _PALM_HALF * np.array([self.palm_w, self.palm_l, self.thick])
        centre = _PALM_CENTRE * np.array([self.palm_w, self.palm_l, 1.0])
        lat = np.linspace(0, np.pi, PALM_RINGS + 2)[1:-1]
        lon = np.linspace(0, 2 * np.pi, PALM_AROUND, endpoint=False)
        phi, theta = np.meshgrid(lat, lon, indexing="ij")
        points = np.stack(
            [
                half[0] * _spow(np.sin(phi) * np.sin(theta), 0.55),
                -half[1] * _spow(np.cos(phi), 0.7),
                half[2] * _spow(np.sin(phi) * np.cos(theta), 0.8),
            ],
            axis=-1,
        ).reshape(-1, 3)
        poles = np.array([[0.0, -half[1], 0.0], [0.0, half[1], 0.0]])
        return (np.concatenate([points, poles]) + centre) * self.size

    def finger(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vertices (rings * AROUND + 2, 3), arc position per vertex and joint arc positions."""
        spec = _FINGERS[name]
        direction = np.array(spec.direction) / np.linalg.norm(spec.direction)
        scale = self.thumb_len if name == "thumb" else self.finger_len * self.per_finger[name]
        lengths = np.array(spec.lengths) * scale
        radii = np.array(spec.radii) * self.thick
        base = np.array(spec.base) * np.array([self.palm_w, self.palm_l, 1.0])
        joints_s = BASE_INSET + np.concatenate([[0.0], np.cumsum(lengths)])  # j1, j2, j3, tip
        cap = radii[2]
        centre_s = joints_s[3] - cap
        ring_s = [0.0, joints_s[0]]
        ring_s += list(joints_s[0] + lengths[0] * np.array([1 / 3, 2 / 3]))
        ring_s += [joints_s[1], joints_s[1] + lengths[1] / 2, joints_s[2], (joints_s[2] + centre_s) / 2, centre_s]
        angles = np.radians([30.0, 55.0, 75.0])
        ring_s += list(centre_s + cap * np.sin(angles))
        ring_s = np.array(ring_s)
        ring_r = np.interp(ring_s, [0.0, joints_s[0], joints_s[1], joints_s[2], centre_s], [radii[0] * 1.05, radii[0], radii[1], radii[2], cap])
        ring_r[-3:] = cap * np.cos(angles)
        e1, e2 = _frame(direction)
        theta = np.linspace(0, 2 * np.pi, AROUND, endpoint=False)
        section = np.cos(theta)[:, None] * e1 + 0.85 * np.sin(theta)[:, None] * e2
        start = base - BASE_INSET * direction
        rings = start + ring_s[:, None, None] * direction + ring_r[:, None, None] * section
        poles = np.stack([start, start + joints_s[3] * direction])
        vertices = np.concatenate([rings.reshape(-1, 3), poles]) * self.size
        arc = np.concatenate([np.repeat(ring_s, AROUND), [0.0, joints_s[3]]])
        return vertices, arc, joints_s

    def all_vertices(self) -> np.ndarray:
        return np.concatenate([self.palm()] + [self.finger(f)[0] for f in FINGERS])


def _skin_weights_for_finger(name: str, arc: np.ndarray, joints_s: np.ndarray) -> np.ndarray:
    """Cross-faded weights over (wrist, joint1, joint2, joint3) along the finger's arc."""
    ids = [0] + [MANO_JOINT_NAMES.index(f"{name}{k}") for k in (1, 2, 3)]
    weights = np.zeros((arc.size, 16))
    previous = np.ones(arc.size)
    for k, joint in enumerate(ids[1:]):
        child = _smoothstep((arc - joints_s[k] + BLEND) / (2 * BLEND))
        weights[:, ids[k]] += previous * (1 - child)
        previous = previous * child
        if k == 2:
            weights[:, joint] += previous
    return weights


def build_procedural_hand(side: str = "right") -> HandModel:
    """The procedural hand for one side; the left hand is the right one mirrored in x."""
    rest = _Builder(np.zeros(10))
    palm = rest.palm()
    parts, weights, faces = [palm], [np.eye(16)[np.zeros(len(palm), int)]], [tube_faces(0, PALM_RINGS, PALM_AROUND)]
    ring_centres: dict[str, list[np.ndarray]] = {}
    tips: dict[str, int] = {}
    offset = len(palm)
    for name in FINGERS:
        vertices, arc, joints_s = rest.finger(name)
        rings = len(vertices) // AROUND
        faces.append(tube_faces(offset, rings, AROUND))
        weights.append(_skin_weights_for_finger(name, arc, joints_s))
        ring_index = {s: i for i, s in enumerate(arc[::AROUND][:rings])}
        ring_centres[name] = [offset + ring_index[s] * AROUND for s in joints_s[:3]]
        tips[name] = offset + rings * AROUND + 1
        parts.append(vertices)
        offset += len(vertices)
    template = np.concatenate(parts)
    num_vertices = len(template)

    regressor16 = np.zeros((16, num_vertices))
    regressor16[0, PALM_AROUND : 2 * PALM_AROUND] = 1.0 / PALM_AROUND  # second palm ring
    for name in FINGERS:
        for k, first in enumerate(ring_centres[name], start=1):
            regressor16[MANO_JOINT_NAMES.index(f"{name}{k}"), first : first + AROUND] = 1.0 / AROUND
    rows = np.concatenate([regressor16, np.eye(num_vertices)[[tips[f] for f in FINGERS]]])
    regressor21 = rows[list(MANO_TO_INTERHAND)]

    eps = 1e-3
    shapedirs = np.stack(
        [
            (_Builder(eps * e).all_vertices() - _Builder(-eps * e).all_vertices()) / (2 * eps)
            for e in np.eye(10)
        ],
        axis=-1,
    )
    faces_all = np.concatenate(faces)
    if side == "left":
        mirror = np.array([-1.0, 1.0, 1.0])
        template = template * mirror
        shapedirs = shapedirs * mirror[None, :, None]
        faces_all = faces_all[:, [0, 2, 1]]
    return HandModel(
        name="procedural",
        side=side,
        template=template,
        faces=faces_all,
        skin_weights=np.concatenate(weights),
        shapedirs=shapedirs,
        joint_regressor16=regressor16,
        joint_regressor=regressor21,
    )
