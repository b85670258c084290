"""The capture-like scene generator and `data stats`: statistics that follow InterHand2.6M's capture."""

import numpy as np
import pytest

from lagchand_edge.data import camera as cam
from lagchand_edge.data.scene import INTERACTIONS, PLACEMENTS, axis_angle, hand_frame, rotation, sample_scene
from lagchand_edge.data.stats import dataset_statistics, hand_statistics
from lagchand_edge.data.synth import _subject_shapes
from lagchand_edge.hand import load_hands
from lagchand_edge.hand.joints import HAND_NAMES, MIDDLE_MCP, WRIST


def _scenes(count, seed=0):
    hands = load_hands()
    shapes = _subject_shapes(seed)
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        yield sample_scene(rng, hands, (256, 256), shapes[index % 4]), hands


def test_axis_angle_inverts_rotation_also_near_half_turns():
    rng = np.random.default_rng(0)
    for angle in (0.3, 2.0, np.pi - 1e-6, np.pi):
        axis = rng.normal(size=3)
        matrix = rotation(axis, angle)
        np.testing.assert_allclose(rotation(axis_angle(matrix), np.linalg.norm(axis_angle(matrix))) if angle else matrix, matrix, atol=1e-5)


def test_hand_frame_points_the_rest_hand_where_asked():
    fingers, back = np.array([0.0, -1.0, -1.0]) / np.sqrt(2), np.array([1.0, 0.0, 0.0])
    frame = hand_frame(fingers, back)
    np.testing.assert_allclose(frame @ [0, 1, 0], fingers, atol=1e-12)
    np.testing.assert_allclose(frame @ [0, 0, 1], back, atol=1e-12)
    assert np.linalg.det(frame) == pytest.approx(1.0)


def test_every_interaction_kind_is_drawn_and_hands_are_mostly_upright():
    kinds, upright, wrists_below = set(), [], []
    for scene, hands in _scenes(120):
        kinds.add(scene.interaction)
        for side in HAND_NAMES:
            joints = hands[side].forward_numpy(scene.pose[side], scene.shape[side], scene.trans[side]).joints[0].numpy()
            axis = scene.camrot @ (joints[MIDDLE_MCP] - joints[WRIST])
            uv = axis[:2] / np.linalg.norm(axis[:2])
            upright.append(uv[1] < -0.2)  # fingers point up in the picture
            elbow, wrist = scene.arms[side].elbow, scene.arms[side].wrist
            wrists_below.append((elbow - wrist) @ np.array([0.0, 1.0, 0.0]) > 0)  # the elbow hangs lower (world y is down)
    assert kinds == set(INTERACTIONS) == set(PLACEMENTS)
    assert np.mean(upright) > 0.6
    assert np.mean(wrists_below) > 0.8


def test_cameras_stay_on_the_dome_and_upright():
    for scene, _ in _scenes(40, seed=1):
        campos = scene.campos / 1000
        centre = np.mean([arm.wrist for arm in scene.arms.values()], axis=0)
        assert 0.45 < np.linalg.norm(campos - centre) < 1.35
        camera_down = scene.camrot[1]
        roll = np.degrees(np.arccos(np.clip(camera_down @ np.array([0.0, 1.0, 0.0]) / np.linalg.norm(camera_down[[0, 1]] + 1e-12), -1, 1)))
        assert roll < 90  # image-down never points to world-up


def test_hands_are_framed_inside_the_picture_with_room():
    for scene, hands in _scenes(20, seed=2):
        k = cam.intrinsics(scene.focal, scene.princpt)
        from lagchand_edge.data.scene import scene_vertices_cam

        uv = np.concatenate([cam.project(v * 1000, k) for v in scene_vertices_cam(scene, hands).values()])
        extent = (uv.max(0) - uv.min(0)).max()
        assert 0.45 * 256 < extent < 0.66 * 256
        assert (uv.min(0) > 0).all() and (uv.max(0) < 256).all()


def test_statistics_of_a_known_pose():
    joints = np.zeros((2, 21, 3))
    for h in range(2):
        joints[h, :, 2] = 500.0
        joints[h, MIDDLE_MCP] = [0.0, -90.0, 500.0]  # fingers straight up in the image
        joints[h, 7] = [-20.0 * (1 if h == 1 else -1), -80.0, 500.0]  # index MCP
        joints[h, 19] = [20.0 * (1 if h == 1 else -1), -80.0, 500.0]  # pinky MCP
        joints[h, :, 0] += 100.0 * h
    uv = cam.project(joints, cam.intrinsics(np.array([500.0, 500.0]), np.array([128.0, 128.0])))
    stats = hand_statistics(joints, uv, np.ones((2, 21), bool))
    assert stats["image_angle_deg"] == pytest.approx([0.0, 0.0], abs=1e-6)
    # fingers up, the right hand's index on the camera's left (the left hand's on its right): the backs face the camera
    assert stats["palm_to_camera_deg"] == pytest.approx([180.0, 180.0], abs=15)
    assert stats["hands_distance_mm"] == pytest.approx([100.0])


def test_data_stats_on_the_real_sample_and_a_synthetic_set(real_root, synth_root):
    real = dataset_statistics(real_root)
    assert real["samples"] == 2 and real["statistics"]["image_angle_deg"]["n"] == 4
    synthetic = dataset_statistics(synth_root)
    assert synthetic["statistics"]["hands_distance_mm"]["n"] == 8
    assert 20 < synthetic["statistics"]["hand_size_px"]["p50"] < 256
