"""Synthetic InterHand2.6M-format data: two posed procedural hands, rendered, with every file.

Each sample is drawn from its own generator seeded by (seed, index), so a set is reproducible
and any slice of it can be rendered in parallel. The writer produces the release's layout and
keys exactly, plus `dataset.json` naming the hand model, so the reader has one code path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from lagchand_edge import __version__
from lagchand_edge.data import camera as cam
from lagchand_edge.data.layout import DATASET_CARD, SPLITS, annotation_path
from lagchand_edge.data.render import rasterize, shade, vertex_normals
from lagchand_edge.errors import UserError
from lagchand_edge.hand import HandModel, load_hands
from lagchand_edge.hand.joints import HAND_NAMES, MANO_JOINT_NAMES
from lagchand_edge.io import atomic_dir

SKIN_TONES = np.array(
    [[0.96, 0.80, 0.69], [0.92, 0.72, 0.58], [0.84, 0.62, 0.48], [0.71, 0.49, 0.36], [0.55, 0.37, 0.26], [0.38, 0.25, 0.17]]
)
FINGER_AXES = {  # flexion axis (right hand, rest frame): positive angle curls towards the palm
    "index": np.array([-1.0, -0.07, 0.0]),
    "middle": np.array([-1.0, 0.0, 0.0]),
    "ring": np.array([-1.0, 0.07, 0.0]),
    "pinky": np.array([-1.0, 0.15, 0.0]),
    "thumb": np.cross([-0.62, 0.74, -0.26], [0.55, 0.35, -0.75]),
}
NUM_CAPTURES = 4
PALM_TINT = np.array([0.97, 0.76, 0.70])  # palms are lighter and pinker than the back at every skin tone
NAIL_TINT = np.array([0.97, 0.85, 0.83])


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
    skin: np.ndarray
    light: np.ndarray
    ambient: float


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    skew = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew


def _axis_angle(matrix: np.ndarray) -> np.ndarray:
    angle = np.arccos(np.clip((np.trace(matrix) - 1) / 2, -1.0, 1.0))
    if angle < 1e-8:
        return np.zeros(3)
    axis = np.array([matrix[2, 1] - matrix[1, 2], matrix[0, 2] - matrix[2, 0], matrix[1, 0] - matrix[0, 1]])
    return axis / (2 * np.sin(angle)) * angle


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def sample_finger_pose(rng: np.random.Generator) -> np.ndarray:
    """45 finger-pose values for a right hand: curls with correlated joints, some spread."""
    pose = np.zeros((16, 3))
    grip = rng.uniform(0.0, 1.0)
    for finger, axis in FINGER_AXES.items():
        curl = np.clip(grip + rng.normal(0, 0.3), 0.0, 1.0)
        limits = (0.9, 1.1, 0.6) if finger == "thumb" else (1.4, 1.7, 1.2)
        for k, limit in zip((1, 2, 3), limits, strict=True):
            angle = curl * limit * rng.uniform(0.7, 1.1) - (0.15 if k == 1 else 0.0) * rng.uniform()
            pose[MANO_JOINT_NAMES.index(f"{finger}{k}")] = axis / np.linalg.norm(axis) * angle
        spread = rng.normal(0, 0.12) * (1 - curl)
        pose[MANO_JOINT_NAMES.index(f"{finger}1")] += np.array([0.0, 0.0, 1.0]) * spread
    return pose[1:].reshape(-1)


def _mirror_pose(pose: np.ndarray) -> np.ndarray:
    """A right-hand pose as the mirrored left hand's pose (x-mirror: (a, b, c) -> (a, -b, -c))."""
    return (pose.reshape(-1, 3) * np.array([1.0, -1.0, -1.0])).reshape(-1)


def sample_scene(rng: np.random.Generator, hands: dict[str, HandModel], size: tuple[int, int], subject_shape: np.ndarray) -> Scene:
    """Two interacting hands near each other, a camera around them, skin and light."""
    right_rot = _random_rotation(rng)
    relative = _rotation(np.array([0.0, 1.0, 0.0]), rng.uniform(-np.pi, np.pi)) @ _rotation(rng.normal(size=3), rng.uniform(0, 0.6))
    mirror = np.diag([-1.0, 1.0, 1.0])
    left_rot = mirror @ right_rot @ mirror @ relative  # start from the mirror image, then turn
    rotations = {"right": right_rot, "left": left_rot}
    offset = np.array([rng.uniform(-0.11, -0.03), rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05)])
    centre = rng.normal(0, 0.05, size=3) + np.array([0.0, 0.0, 1.0])
    roots = {"right": centre - right_rot @ offset / 2, "left": centre + right_rot @ offset / 2}
    pose, shape, trans = {}, {}, {}
    for side in HAND_NAMES:
        fingers = sample_finger_pose(rng)
        shape[side] = subject_shape + rng.normal(0, 0.05, size=10)
        pose[side] = np.concatenate([_axis_angle(rotations[side]), fingers if side == "right" else _mirror_pose(fingers)])
        rest_wrist = hands[side].forward_numpy(np.zeros(48), shape[side]).joints[0, -1].numpy()
        trans[side] = roots[side] - rest_wrist

    distance = rng.uniform(0.5, 0.9)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    campos = centre + direction * distance
    up = _rotation(direction, rng.uniform(-np.pi, np.pi)) @ np.cross(direction, rng.normal(size=3))
    camrot = cam.look_at(campos, centre, up)
    width, height = size
    scene = Scene(pose, shape, trans, campos * 1000, camrot, np.ones(2), np.zeros(2), np.zeros(3), np.zeros(3), 0.0)
    # Fit the intrinsics so both hands fill 45-80% of the frame, off-centre by a little.
    vertices = np.concatenate([v for v in scene_vertices_cam(scene, hands).values()])
    xy = vertices[:, :2] / vertices[:, 2:3]
    extent = (xy.max(0) - xy.min(0)).max()
    focal = rng.uniform(0.45, 0.8) * min(width, height) / extent
    centre_xy = (xy.max(0) + xy.min(0)) / 2
    principal = np.array([width, height]) / 2 - centre_xy * focal + rng.normal(0, 0.04, 2) * min(width, height)
    scene.focal = np.array([focal, focal * rng.uniform(0.998, 1.002)])
    scene.princpt = principal
    tone = SKIN_TONES[rng.integers(len(SKIN_TONES))]
    scene.skin = np.clip(tone + rng.normal(0, 0.03, 3), 0, 1)
    scene.light = np.array([rng.normal(0, 0.6), rng.normal(0, 0.6), -1.0])
    scene.ambient = float(rng.uniform(0.25, 0.55))
    return scene


def scene_vertices_cam(scene: Scene, hands: dict[str, HandModel]) -> dict[str, np.ndarray]:
    """Camera-space vertices (metres) of both hands."""
    out = {}
    for side in HAND_NAMES:
        world = hands[side].forward_numpy(scene.pose[side], scene.shape[side], scene.trans[side]).vertices[0].numpy()
        out[side] = cam.world_to_camera(world * 1000, scene.camrot, scene.campos) / 1000
    return out


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A cluttered, photo-like backdrop: smooth colour field, shapes, stripes and sensor noise."""
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
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 3.0)))
    return np.asarray(image, dtype=np.float64) / 255.0


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
    tips = [MANO_JOINT_NAMES.index(f"{finger}3") for finger in FINGER_AXES]
    nail = (hand.skin_weights[:, tips].max(1) > 0.99) & (normal_z > 0.35)
    colour[nail] = 0.3 * skin + 0.7 * NAIL_TINT
    return colour


def render_scene(scene: Scene, hands: dict[str, HandModel], size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The RGB uint8 picture of a scene."""
    width, height = size
    verts = scene_vertices_cam(scene, hands)
    vertices = np.concatenate([verts["left"], verts["right"]])
    faces = np.concatenate([hands["left"].faces, hands["right"].faces + len(verts["left"])])
    albedo = np.concatenate([skin_albedo(hands[side], scene.skin) for side in ("left", "right")])
    colours = albedo * rng.uniform(0.93, 1.05, size=(len(vertices), 1))
    k = cam.intrinsics(scene.focal, scene.princpt)
    face_id, _, bary = rasterize(vertices, faces, k, width, height)
    fg, mask = shade(vertices, faces, colours, face_id, bary, scene.light, scene.ambient)
    image = background(rng, width, height)
    image[mask] = fg[mask]
    image += rng.normal(0, rng.uniform(0.005, 0.02), image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def _subject_shapes(seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 999_983]).normal(0, 0.8, size=(NUM_CAPTURES, 10))


def generate_sample(seed: int, index: int, size: tuple[int, int]) -> tuple[np.ndarray, Scene, dict[str, np.ndarray]]:
    """Image, scene and world joints (mm, release order: right 0-20, left 21-41) of one sample."""
    hands = load_hands("procedural")
    rng = np.random.default_rng([seed, index])
    scene = sample_scene(rng, hands, size, _subject_shapes(seed)[index % NUM_CAPTURES])
    image = render_scene(scene, hands, size, rng)
    joints = {
        side: hands[side].forward_numpy(scene.pose[side], scene.shape[side], scene.trans[side]).joints[0].numpy() * 1000
        for side in HAND_NAMES
    }
    return image, scene, joints


def _single_thread_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _render_task(args: tuple[int, int, tuple[int, int], str]) -> dict:
    seed, index, size, image_path = args
    image, scene, joints = generate_sample(seed, index, size)
    Image.fromarray(image).save(image_path, quality=92)
    return {"index": index, "scene": scene, "joints": joints}


def write_dataset(
    out: Path,
    num: int,
    seed: int = 0,
    split: str = "test",
    size: tuple[int, int] = (256, 256),
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    force: bool = False,
) -> Path:
    """Write `num` synthetic samples to `out` in the release layout (atomically)."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if num < 1:
        raise UserError("--num must be at least 1")
    workers = workers or min(os.cpu_count() or 1, 2)
    with atomic_dir(out, force=force) as tmp:
        records = _render_all(tmp, num, seed, split, size, workers, progress)
        _write_annotations(tmp, records, split, size)
        card = {"generator": "lagchand-edge synth", "version": __version__, "hand_model": "procedural",
                "split": split, "num": num, "seed": seed, "image_size": list(size)}
        (tmp / DATASET_CARD).write_text(json.dumps(card, indent=2))
    return out


def _image_relpath(index: int) -> str:
    capture = index % NUM_CAPTURES
    return f"Capture{capture}/synth_{index // 100:04d}/cam{400000 + index}/image{index}.jpg"


def _render_all(tmp: Path, num: int, seed: int, split: str, size: tuple[int, int], workers: int, progress) -> list[dict]:
    tasks = []
    for index in range(num):
        path = tmp / "images" / split / _image_relpath(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        tasks.append((seed, index, size, str(path)))
    records = []
    if workers > 1 and num > 4:
        with ProcessPoolExecutor(workers, initializer=_single_thread_worker) as pool:
            for record in pool.map(_render_task, tasks, chunksize=4):
                records.append(record)
                if progress:
                    progress(1)
    else:
        for task in tasks:
            records.append(_render_task(task))
            if progress:
                progress(1)
    return records


def _write_annotations(tmp: Path, records: list[dict], split: str, size: tuple[int, int]) -> None:
    images, annotations, cameras, joints3d, mano = [], [], {}, {}, {}
    for record in records:
        index, scene = record["index"], record["scene"]
        capture, camera_id = str(index % NUM_CAPTURES), str(400000 + index)
        world = np.concatenate([record["joints"]["right"], record["joints"]["left"]])
        k = cam.intrinsics(scene.focal, scene.princpt)
        uv = cam.project(cam.world_to_camera(world, scene.camrot, scene.campos), k)
        lo, hi = uv.min(0), uv.max(0)
        images.append({"id": index, "file_name": _image_relpath(index), "width": size[0], "height": size[1],
                       "capture": int(capture), "subject": int(capture), "seq_name": f"synth_{index // 100:04d}",
                       "camera": camera_id, "frame_idx": index})
        annotations.append({"id": index, "image_id": index, "bbox": [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])],
                            "joint_valid": [[1]] * 42, "hand_type": "interacting", "hand_type_valid": 1})
        entry = cameras.setdefault(capture, {"campos": {}, "camrot": {}, "focal": {}, "princpt": {}})
        entry["campos"][camera_id] = scene.campos.tolist()
        entry["camrot"][camera_id] = scene.camrot.tolist()
        entry["focal"][camera_id] = scene.focal.tolist()
        entry["princpt"][camera_id] = scene.princpt.tolist()
        joints3d.setdefault(capture, {})[str(index)] = {
            "world_coord": world.tolist(), "joint_valid": [[True]] * 42, "hand_type": "interacting", "hand_type_valid": True}
        mano.setdefault(capture, {})[str(index)] = {
            side: {"pose": scene.pose[side].tolist(), "shape": scene.shape[side].tolist(), "trans": scene.trans[side].tolist()}
            for side in HAND_NAMES
        }
    contents = {"data": {"images": images, "annotations": annotations}, "camera": cameras,
                "joint_3d": joints3d, "MANO_NeuralAnnot": mano}
    for kind, payload in contents.items():
        path = annotation_path(tmp, split, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload))
