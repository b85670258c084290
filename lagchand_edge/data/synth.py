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
from pathlib import Path

import numpy as np
from PIL import Image

from lagchand_edge import __version__
from lagchand_edge.data import camera as cam
from lagchand_edge.data.appearance import SKIN_TONES, arm_meshes, backdrop, lens, skin_albedo, skin_texture
from lagchand_edge.data.layout import DATASET_CARD, SPLITS, annotation_path
from lagchand_edge.data.render import rasterize, shade
from lagchand_edge.data.scene import Scene, sample_scene, scene_vertices_cam, to_camera
from lagchand_edge.errors import UserError
from lagchand_edge.hand import HandModel, load_hands
from lagchand_edge.hand.joints import HAND_NAMES
from lagchand_edge.io import atomic_dir

NUM_CAPTURES = 4
JPEG_QUALITY = (70, 95)


def render_scene(scene: Scene, hands: dict[str, HandModel], size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The RGB uint8 picture of a scene: hands, forearms and sleeves over the torso and backdrop."""
    width, height = size
    tone = SKIN_TONES[rng.integers(len(SKIN_TONES))]
    skin = np.clip(tone + rng.normal(0, 0.03, 3), 0, 1)
    shirt = rng.uniform(0.05, 0.9, 3) * rng.uniform(0.4, 1.0)
    light = np.array([rng.normal(0, 0.6), rng.normal(0, 0.6), -1.0])
    ambient = float(rng.uniform(0.3, 0.6))
    hand_vertices = scene_vertices_cam(scene, hands)
    parts = [(hand_vertices[side], hands[side].faces, skin_albedo(hands[side], skin)) for side in HAND_NAMES]
    size_factor = float(np.exp(scene.shape["right"][0] * 0.06))
    for side in HAND_NAMES:
        for vertices, faces, part in arm_meshes(scene.arms[side], size_factor):
            colour = skin * 0.88 if part == "skin" else shirt
            parts.append((to_camera(scene, vertices), faces, np.repeat(colour[None], len(vertices), 0)))
    offsets = np.cumsum([0] + [len(v) for v, _, _ in parts])
    vertices = np.concatenate([v for v, _, _ in parts])
    faces = np.concatenate([f + offset for (_, f, _), offset in zip(parts, offsets, strict=False)])
    colours = np.concatenate([c for _, _, c in parts]) * rng.uniform(0.93, 1.05, size=(len(vertices), 1))
    k = cam.intrinsics(scene.focal, scene.princpt)
    face_id, _, bary = rasterize(vertices, faces, k, width, height)
    fg, mask = shade(vertices, faces, colours, face_id, bary, light, ambient)
    image = backdrop(rng, scene, k, size, shirt)
    image[mask] = (fg * skin_texture(rng, height, width))[mask]
    return lens(rng, image)


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
    seed, index, size, image_root = args
    image, scene, joints = generate_sample(seed, index, size)
    file_name = _image_relpath(index, scene.interaction)
    path = Path(image_root) / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    quality = int(np.random.default_rng([seed, index, 1]).integers(*JPEG_QUALITY))  # JPEG artefacts vary like the lens
    Image.fromarray(image).save(path, quality=quality)
    return {"index": index, "scene": scene, "joints": joints, "file_name": file_name}


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


#: The one seed policy for data this toolkit makes when the user gives none (`convert`'s
#: calibration, `drift`'s test set, `quickstart`'s): fixed, so runs repeat, and different per
#: purpose, so no artifact is checked on the images it was calibrated on.
SYNTHETIC_SEEDS = {"calibration": 1234, "test": 2024}


def synthetic_set(out: Path, num: int, purpose: str, progress: Callable[[int], None] | None = None, force: bool = False,
                  workers: int | None = None) -> Path:
    """The synthetic stand-in for user data: `num` test-split samples with `purpose`'s seed."""
    return write_dataset(out, num, SYNTHETIC_SEEDS[purpose], "test", progress=progress, force=force, workers=workers)


def describe_synthetic(num: int, purpose: str) -> str:
    return f"synthetic (seed {SYNTHETIC_SEEDS[purpose]}, {num} samples)"


def _seq_name(index: int, interaction: str) -> str:
    return f"{index // 100:04d}_dh_{interaction}"  # the release names two-hand sequences like 0266_dh_pray


def _image_relpath(index: int, interaction: str) -> str:
    return f"Capture{index % NUM_CAPTURES}/{_seq_name(index, interaction)}/cam{400000 + index}/image{index}.jpg"


def _render_all(tmp: Path, num: int, seed: int, split: str, size: tuple[int, int], workers: int, progress) -> list[dict]:
    tasks = [(seed, index, size, str(tmp / "images" / split)) for index in range(num)]
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
        images.append({"id": index, "file_name": record["file_name"], "width": size[0], "height": size[1],
                       "capture": int(capture), "subject": int(capture), "seq_name": _seq_name(index, scene.interaction),
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
