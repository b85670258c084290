"""Capture-like two-hand scenes: a subject in a camera dome, as InterHand2.6M was recorded.

World frame as the release's (`camera.json`): millimetres in the files, metres here, y points
down, the subject faces -z. Each scene holds both hands in one of the release's interaction
kinds (prayer, clasp, cross, fingertip touch, counting, grasp, free range of motion), each hand
on a forearm that leaves the frame towards its elbow, in front of the subject's torso, seen by a
camera on the dome (mostly in front and to the sides, upright, about a metre away).

The numbers that set these statistics are named constants below with where they come from;
`lagchand-edge data stats` measures the result against a real root.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lagchand_edge.data import camera as cam
from lagchand_edge.hand import HandModel
from lagchand_edge.hand.joints import FINGERS, HAND_NAMES, MANO_JOINT_NAMES

UP, FRONT, SUBJECT_RIGHT = np.array([0.0, -1.0, 0.0]), np.array([0.0, 0.0, -1.0]), np.array([-1.0, 0.0, 0.0])
MIRROR = np.diag([-1.0, 1.0, 1.0])  # subject right <-> subject left
HANDS_CENTRE = np.array([0.0, 0.0, 1.0])  # the real sample's hands sit 1.0-1.06 m from the world origin

#: Camera dome, angles seen from the hands (azimuth 0 = in front of the subject, elevation > 0 =
#: above). The real sample's four cameras sit at azimuth -23..96 deg, elevation -15..7 deg,
#: 0.63-1.09 m away, all upright (image down = world down); the release's dome surrounds the
#: subject's front and sides, above and below the hands.
AZIMUTH_SD_DEG, AZIMUTH_MAX_DEG = 55.0, 110.0
ELEVATION_RANGE_DEG = (-30.0, 50.0)
DISTANCE_RANGE_M = (0.6, 1.2)
ROLL_SD_DEG = 4.0
TILTED_SHARE, TILTED_ROLL_DEG = 0.12, 60.0  # a few hand-held-like views for photos off the dome

#: Interaction kinds (the release's two-hand sequence families) and how often each is drawn.
INTERACTIONS = {"pray": 0.12, "clasp": 0.15, "cross": 0.10, "fingertips": 0.13, "counting": 0.15, "grasp": 0.15, "free": 0.20}

FINGER_AXES = {  # flexion axis (right hand, rest frame): positive angle curls towards the palm
    "index": np.array([-1.0, -0.07, 0.0]),
    "middle": np.array([-1.0, 0.0, 0.0]),
    "ring": np.array([-1.0, 0.07, 0.0]),
    "pinky": np.array([-1.0, 0.15, 0.0]),
    "thumb": np.cross([-0.62, 0.74, -0.26], [0.55, 0.35, -0.75]),
}
FOREARM_M = (0.22, 0.28)
WRIST_FLEX_DEG, WRIST_DEVIATION_DEG = (-45.0, 60.0), (-20.0, 25.0)


@dataclass
class Arm:
    """One forearm: wrist and elbow (metres, world) and the hand's frame at the wrist."""

    wrist: np.ndarray
    elbow: np.ndarray
    hand_rotation: np.ndarray
    sleeve: float  # fraction of the forearm, from the elbow, that the sleeve covers


@dataclass
class Scene:
    """Everything that defines one synthetic sample (parameters in MANO's layout, metres)."""

    pose: dict[str, np.ndarray]
    shape: dict[str, np.ndarray]
    trans: dict[str, np.ndarray]
    campos: np.ndarray  # mm
    camrot: np.ndarray
    focal: np.ndarray
    princpt: np.ndarray
    interaction: str = "free"
    arms: dict[str, Arm] = field(default_factory=dict)
    torso: np.ndarray = field(default_factory=lambda: np.zeros((8, 3)))  # box corners, metres, world


def rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    skew = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew


def axis_angle(matrix: np.ndarray) -> np.ndarray:
    angle = np.arccos(np.clip((np.trace(matrix) - 1) / 2, -1.0, 1.0))
    if angle < 1e-8:
        return np.zeros(3)
    if np.pi - angle < 1e-4:  # near 180 deg the antisymmetric part vanishes: read the axis off R + I
        column = (matrix + np.eye(3))[:, np.argmax(np.diag(matrix))]
        return column / np.linalg.norm(column) * angle
    axis = np.array([matrix[2, 1] - matrix[1, 2], matrix[0, 2] - matrix[2, 0], matrix[1, 0] - matrix[0, 1]])
    return axis / (2 * np.sin(angle)) * angle


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def hand_frame(fingers: np.ndarray, back: np.ndarray) -> np.ndarray:
    """Rotation taking the rest hand (fingers +y, back of the hand +z) to `fingers` / `back` (world)."""
    a = _unit(fingers)
    b = _unit(back - (back @ a) * a)
    return np.stack([np.cross(a, b), a, b], axis=1)


def _jitter(rng: np.random.Generator, v: np.ndarray, degrees: float) -> np.ndarray:
    return rotation(rng.normal(size=3), np.radians(rng.normal(0, degrees))) @ v


def sample_finger_pose(rng: np.random.Generator, curls: np.ndarray | None = None) -> np.ndarray:
    """45 finger-pose values for a right hand; `curls` (5, thumb first, 0 straight - 1 fist) or a random grip."""
    if curls is None:
        curls = np.clip(rng.uniform(0.0, 1.0) + rng.normal(0, 0.3, 5), 0.0, 1.0)
    pose = np.zeros((16, 3))
    for finger, curl in zip(FINGERS, curls, strict=True):
        axis = FINGER_AXES[finger]
        limits = (0.9, 1.1, 0.6) if finger == "thumb" else (1.4, 1.7, 1.2)
        for k, limit in zip((1, 2, 3), limits, strict=True):
            angle = curl * limit * rng.uniform(0.75, 1.1) - (0.15 if k == 1 else 0.0) * rng.uniform()
            pose[MANO_JOINT_NAMES.index(f"{finger}{k}")] = axis / np.linalg.norm(axis) * angle
        spread = rng.normal(0, 0.12) * (1 - curl)
        pose[MANO_JOINT_NAMES.index(f"{finger}1")] += np.array([0.0, 0.0, 1.0]) * spread
    return pose[1:].reshape(-1)


def mirror_pose(pose: np.ndarray) -> np.ndarray:
    """A right-hand pose as the mirrored left hand's pose (x-mirror: (a, b, c) -> (a, -b, -c))."""
    return (pose.reshape(-1, 3) * np.array([1.0, -1.0, -1.0])).reshape(-1)


def _curls(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    return rng.uniform(low, high, 5)


@dataclass
class _Placement:
    """One interaction, for the right hand and the left: finger direction, back normal, wrist, curls."""

    fingers: dict[str, np.ndarray]
    back: dict[str, np.ndarray]
    wrist: dict[str, np.ndarray]
    curls: dict[str, np.ndarray]


def _symmetric(fingers: np.ndarray, back: np.ndarray, wrist: np.ndarray, curls: tuple[np.ndarray, np.ndarray]) -> _Placement:
    """A placement given for the right hand, the left hand its mirror image."""
    return _Placement({"right": fingers, "left": MIRROR @ fingers}, {"right": back, "left": MIRROR @ back},
                      {"right": wrist, "left": MIRROR @ wrist}, {"right": curls[0], "left": curls[1]})


def _pray(rng):
    fingers = _unit(UP + rng.uniform(0.0, 0.6) * FRONT)
    gap = rng.uniform(0.015, 0.025)  # half the palms' distance: touching
    curl = _curls(rng, 0.0, 0.2)
    return _symmetric(fingers, SUBJECT_RIGHT, SUBJECT_RIGHT * gap - fingers * 0.05, (curl, curl + rng.normal(0, 0.05, 5)))


def _clasp(rng):
    fingers = _unit(FRONT + rng.uniform(0.3, 1.0) * UP + rng.uniform(-0.4, 0.4) * SUBJECT_RIGHT)
    gap = rng.uniform(0.02, 0.035)
    return _symmetric(fingers, SUBJECT_RIGHT, SUBJECT_RIGHT * gap - fingers * 0.04, (_curls(rng, 0.6, 1.0), _curls(rng, 0.6, 1.0)))


def _cross(rng):
    fingers = _unit(UP * rng.uniform(0.6, 1.0) - SUBJECT_RIGHT * rng.uniform(0.4, 0.9) + FRONT * rng.uniform(0.0, 0.4))
    back = FRONT if rng.uniform() < 0.5 else -FRONT  # palms to the body or to the front
    depth = FRONT * rng.uniform(0.02, 0.04)
    placement = _symmetric(fingers, back, -SUBJECT_RIGHT * 0.02 - fingers * 0.03, (_curls(rng, 0.0, 0.7), _curls(rng, 0.0, 0.7)))
    placement.wrist["right"] = placement.wrist["right"] + depth
    return placement


def _fingertips(rng):
    fingers = _unit(UP + rng.uniform(0.2, 0.7) * -SUBJECT_RIGHT + rng.uniform(0.0, 0.5) * FRONT)
    half = rng.uniform(0.06, 0.085)
    curl = _curls(rng, 0.05, 0.4)
    return _symmetric(fingers, SUBJECT_RIGHT, SUBJECT_RIGHT * half - UP * 0.05, (curl, np.clip(curl + rng.normal(0, 0.1, 5), 0, 1)))


def _counting(rng):
    """One hand shows a count, the other's index points at it."""
    shown = rng.integers(0, 6)
    counted = np.full(5, 0.95)
    counted[1 : 1 + min(shown, 4)] = 0.05
    if shown == 5:
        counted[0] = 0.05
    counted = np.clip(counted + rng.normal(0, 0.05, 5), 0, 1)
    fingers = _unit(UP + rng.uniform(0.0, 0.4) * FRONT + rng.normal(0, 0.2, 3))
    back = FRONT if rng.uniform() < 0.7 else -FRONT
    pointing = np.array([0.9, 0.05, 0.95, 0.95, 0.95])
    target = fingers * 0.12 + SUBJECT_RIGHT * 0.02
    wrist_b = -SUBJECT_RIGHT * rng.uniform(0.1, 0.16) - UP * rng.uniform(0.0, 0.06) + FRONT * rng.uniform(0.0, 0.05)
    placement = _Placement({"right": fingers, "left": _unit(target - wrist_b)}, {"right": back, "left": UP},
                           {"right": np.zeros(3), "left": wrist_b}, {"right": counted, "left": pointing})
    return _swap_roles(placement) if rng.uniform() < 0.5 else placement


def _grasp(rng):
    """One hand, flat and turned sideways, held by the other around its fingers or palm."""
    held = _unit(FRONT + rng.uniform(0.2, 0.8) * -SUBJECT_RIGHT + rng.uniform(0.0, 0.5) * UP)
    held_back = UP if rng.uniform() < 0.6 else -SUBJECT_RIGHT
    along = rng.uniform(0.04, 0.1)
    grip_wrist = held * along - UP * 0.035 - FRONT * 0.03 + SUBJECT_RIGHT * 0.03
    placement = _Placement({"right": held, "left": _unit(UP + 0.5 * FRONT)}, {"right": held_back, "left": -SUBJECT_RIGHT},
                           {"right": np.zeros(3), "left": grip_wrist}, {"right": _curls(rng, 0.0, 0.25), "left": _curls(rng, 0.55, 0.9)})
    return _swap_roles(placement) if rng.uniform() < 0.5 else placement


def _free(rng):
    """Range-of-motion-like: each hand anywhere in a cone in front of its side, any finger pose."""
    fingers = _unit(_jitter(rng, _unit(UP + 0.5 * FRONT + 0.3 * -SUBJECT_RIGHT), 35.0))
    back = rng.normal(size=3)
    half = rng.uniform(0.03, 0.09)
    other = _unit(_jitter(rng, _unit(UP + 0.5 * FRONT + 0.3 * SUBJECT_RIGHT), 35.0))
    backs = {"right": back, "left": rng.normal(size=3)}
    wrists = {"right": SUBJECT_RIGHT * half, "left": -SUBJECT_RIGHT * half + rng.normal(0, 0.03, 3)}
    grips = {side: np.clip(rng.uniform() + rng.normal(0, 0.3, 5), 0, 1) for side in ("right", "left")}  # drawn in this order
    return _Placement({"right": fingers, "left": other}, backs, wrists, grips)


def _swap_roles(placement: _Placement) -> _Placement:
    """The same interaction with the hands' roles exchanged (mirrored across the body)."""
    swap = {"right": "left", "left": "right"}
    return _Placement(*({side: MIRROR @ getattr(placement, name)[swap[side]] for side in HAND_NAMES} for name in ("fingers", "back", "wrist")),
                      {side: placement.curls[swap[side]] for side in HAND_NAMES})


PLACEMENTS = {"pray": _pray, "clasp": _clasp, "cross": _cross, "fingertips": _fingertips, "counting": _counting, "grasp": _grasp, "free": _free}


def _forearm(rng: np.random.Generator, side: str, wrist: np.ndarray, hand_rotation: np.ndarray) -> np.ndarray:
    """Elbow position: the forearm leaves the wrist within the wrist's range of motion, towards the
    body and downwards where it can (the elbow hangs by the torso), on the hand's own side."""
    length = rng.uniform(*FOREARM_M)
    side_sign = 1.0 if side == "right" else -1.0
    best, best_score = None, -np.inf
    for _ in range(6):
        flex, dev = np.radians(rng.uniform(*WRIST_FLEX_DEG)), np.radians(rng.uniform(*WRIST_DEVIATION_DEG))
        local = rotation(np.array([1.0, 0.0, 0.0]), flex) @ rotation(np.array([0.0, 0.0, 1.0]), dev) @ np.array([0.0, -1.0, 0.0])
        direction = hand_rotation @ local
        score = direction @ -UP + direction @ -FRONT + 0.5 * side_sign * (direction @ SUBJECT_RIGHT)
        if score > best_score:
            best, best_score = direction, score
    return wrist + best * length


def _place_hands(rng: np.random.Generator, hands: dict[str, HandModel], subject_shape: np.ndarray, interaction: str):
    placement = PLACEMENTS[interaction](rng)
    turn = rotation(rng.normal(size=3), np.radians(rng.normal(0, 12.0)))  # the whole pair, a little
    centre = HANDS_CENTRE + rng.normal(0, [0.04, 0.06, 0.04])
    pose, shape, trans, arms = {}, {}, {}, {}
    for side in HAND_NAMES:
        fingers = _jitter(rng, turn @ placement.fingers[side], 7.0)
        frame = hand_frame(fingers, turn @ placement.back[side])
        finger_pose = sample_finger_pose(rng, placement.curls[side])
        shape[side] = subject_shape + rng.normal(0, 0.05, size=10)
        pose[side] = np.concatenate([axis_angle(frame), finger_pose if side == "right" else mirror_pose(finger_pose)])
        wrist = centre + turn @ placement.wrist[side]
        rest_wrist = hands[side].forward_numpy(np.zeros(48), shape[side]).joints[0, -1].numpy()
        trans[side] = wrist - rest_wrist
        arms[side] = Arm(wrist, _forearm(rng, side, wrist, frame), frame, float(rng.uniform(0.0, 0.9)))
    return pose, shape, trans, arms, centre


def _torso(rng: np.random.Generator, centre: np.ndarray) -> np.ndarray:
    """Corners of the subject's torso as a box behind the hands (chest to belly, shoulder width)."""
    half = np.array([rng.uniform(0.16, 0.22), 0.35, 0.1])
    middle = np.array([0.0, centre[1] + rng.uniform(0.0, 0.15), centre[2] + rng.uniform(0.2, 0.32) + half[2]])
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
    return middle + signs * half


def _dome_camera(rng: np.random.Generator, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position (metres) and rotation of a camera on the dome, looking at `target`."""
    azimuth = np.radians(np.clip(rng.normal(0, AZIMUTH_SD_DEG), -AZIMUTH_MAX_DEG, AZIMUTH_MAX_DEG))
    elevation = np.radians(rng.uniform(*ELEVATION_RANGE_DEG))
    direction = np.array([np.sin(azimuth) * np.cos(elevation), -np.sin(elevation), -np.cos(azimuth) * np.cos(elevation)])
    campos = target + direction * rng.uniform(*DISTANCE_RANGE_M)
    camrot = cam.look_at(campos, target, UP)
    roll = rng.uniform(-TILTED_ROLL_DEG, TILTED_ROLL_DEG) if rng.uniform() < TILTED_SHARE else rng.normal(0, ROLL_SD_DEG)
    return campos, rotation(np.array([0.0, 0.0, 1.0]), np.radians(roll)) @ camrot


def sample_scene(rng: np.random.Generator, hands: dict[str, HandModel], size: tuple[int, int], subject_shape: np.ndarray) -> Scene:
    """Two interacting hands on forearms, a torso behind them, a dome camera framing the hands."""
    names = list(INTERACTIONS)
    interaction = names[rng.choice(len(names), p=np.array(list(INTERACTIONS.values())) / sum(INTERACTIONS.values()))]
    pose, shape, trans, arms, centre = _place_hands(rng, hands, subject_shape, interaction)
    campos, camrot = _dome_camera(rng, centre + rng.normal(0, 0.02, 3))
    scene = Scene(pose, shape, trans, campos * 1000, camrot, np.ones(2), np.zeros(2), interaction, arms, _torso(rng, centre))
    # Frame the hands with room around them, as in a capture: both hands fill 50-62% of the picture, so
    # the reader's crop (hands at 70%) stays inside it, as it does on the release's 334x512 frames.
    vertices = np.concatenate(list(scene_vertices_cam(scene, hands).values()))
    xy = vertices[:, :2] / vertices[:, 2:3]
    width, height = size
    focal = rng.uniform(0.5, 0.62) * min(width, height) / (xy.max(0) - xy.min(0)).max()
    principal = np.array([width, height]) / 2 - (xy.max(0) + xy.min(0)) / 2 * focal + rng.normal(0, 0.03, 2) * min(width, height)
    scene.focal = np.array([focal, focal * rng.uniform(0.998, 1.002)])
    scene.princpt = principal
    return scene


def scene_vertices_cam(scene: Scene, hands: dict[str, HandModel]) -> dict[str, np.ndarray]:
    """Camera-space vertices (metres) of both hands."""
    out = {}
    for side in HAND_NAMES:
        world = hands[side].forward_numpy(scene.pose[side], scene.shape[side], scene.trans[side]).vertices[0].numpy()
        out[side] = to_camera(scene, world)
    return out


def to_camera(scene: Scene, world_m: np.ndarray) -> np.ndarray:
    """World points (metres) in the scene camera's frame (metres)."""
    return cam.world_to_camera(world_m * 1000, scene.camrot, scene.campos) / 1000
