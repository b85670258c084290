import numpy as np
import pytest

from lagchand_edge.data import camera as cam
from lagchand_edge.data.transforms import crop_intrinsics, square_box
from lagchand_edge.hand.joints import MIDDLE_MCP, WRIST
from lagchand_edge.metrics import aligned_errors, evaluate_hands, procrustes_aligned, rotation_error_deg, summarize


def _random_camera(rng):
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    return q, rng.normal(0, 500, 3)


def test_world_camera_round_trip():
    rng = np.random.default_rng(0)
    rot, pos = _random_camera(rng)
    world = rng.normal(0, 300, (42, 3))
    np.testing.assert_allclose(cam.camera_to_world(cam.world_to_camera(world, rot, pos), rot, pos), world, atol=1e-9)


def test_projection_round_trip_and_crop_intrinsics():
    rng = np.random.default_rng(1)
    k = cam.intrinsics(np.array([1261.5, 1261.7]), np.array([155.8, 258.8]))
    points = np.column_stack([rng.normal(0, 80, (21, 2)), rng.uniform(800, 1200, 21)])
    uv = cam.project(points, k)
    np.testing.assert_allclose(cam.unproject(uv, points[:, 2], k), points, atol=1e-9)
    box = square_box(uv, fill=0.7)
    k_crop = crop_intrinsics(k, box, 256)
    expected = (uv - np.array(box[:2])) * 256 / box[2]
    np.testing.assert_allclose(cam.project(points, k_crop), expected, atol=1e-9)
    assert (expected > 0).all() and (expected < 256).all()


def test_look_at_puts_target_on_the_optical_axis():
    rot = cam.look_at(np.array([1.0, 2.0, 3.0]), np.zeros(3))
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    target_cam = cam.world_to_camera(np.zeros(3), rot, np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(target_cam[:2], 0, atol=1e-12)
    assert target_cam[2] > 0


def _gt_hands(rng, n=3):
    joints = rng.normal(0, 30, (n, 2, 21, 3))
    joints[..., WRIST, :] = 0
    joints[..., MIDDLE_MCP, :] = [0, 95, 0]
    return joints


def test_mpjpe_ignores_translation_and_scale_of_the_prediction():
    rng = np.random.default_rng(2)
    gt = _gt_hands(rng)
    pred = (gt * 0.001 + 0.3)  # metres, shifted: the protocol rescales to GT bone length
    joint_err, _ = aligned_errors(pred, gt)
    np.testing.assert_allclose(joint_err, 0, atol=1e-9)


def test_mpjpe_hand_computed_values():
    rng = np.random.default_rng(3)
    gt = _gt_hands(rng, n=2)
    pred = gt.copy()
    pred[0, 1, 4, :] += [3.0, 4.0, 0.0]  # one joint of one right hand off by 5 mm
    metrics = summarize(*aligned_errors(pred, gt))
    assert metrics["mpjpe_right"] == pytest.approx(5.0 / (2 * 21))
    assert metrics["mpjpe_left"] == pytest.approx(0.0)
    assert metrics["mpjpe"] == pytest.approx(5.0 / (2 * 21) / 2)
    assert metrics["per_joint"][4] == pytest.approx(5.0 / 4)


def test_root_choice_matters_and_wrist_alignment_is_offered():
    rng = np.random.default_rng(4)
    gt = _gt_hands(rng, n=1)
    pred = gt.copy()
    pred[..., MIDDLE_MCP, :] += [0, 0, 2.0]  # moves the MCP: with MCP root every other joint shifts
    mcp_err, _ = aligned_errors(pred, gt, root="mcp", rescale=False)
    wrist_err, _ = aligned_errors(pred, gt, root="wrist", rescale=False)
    assert mcp_err[0, 0, WRIST] == pytest.approx(2.0)
    assert wrist_err[0, 0, WRIST] == pytest.approx(0.0)
    assert wrist_err[0, 0, MIDDLE_MCP] == pytest.approx(2.0)


def test_vertex_errors_use_the_joint_root_and_scale():
    rng = np.random.default_rng(5)
    gt = _gt_hands(rng, n=1)
    verts = rng.normal(0, 40, (1, 2, 50, 3))
    _, vert_err = aligned_errors(gt * 2 + 7, gt, verts * 2 + 7, verts)
    np.testing.assert_allclose(vert_err, 0, atol=1e-9)


def test_pa_mpjpe_removes_rotation():
    rng = np.random.default_rng(6)
    gt = _gt_hands(rng, n=2)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    pred = gt @ q.T * 1.7 + 5
    np.testing.assert_allclose(procrustes_aligned(pred, gt), gt, atol=1e-8)
    metrics = evaluate_hands(pred, gt)
    assert metrics["pa_mpjpe"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["mpjpe"] > 1.0


def test_rotation_error_is_the_angle_between_the_hands():
    rng = np.random.default_rng(8)
    gt = _gt_hands(rng, n=3)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angles = np.array([10.0, 90.0, 170.0])
    pred = np.empty_like(gt)
    for i, angle in enumerate(np.radians(angles)):  # Rodrigues' formula, one angle per sample
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        rot = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
        pred[i] = gt[i] @ rot.T * 0.8 + 3  # turned, shrunk and moved: only the turn counts
    np.testing.assert_allclose(rotation_error_deg(pred, gt), np.repeat(angles[:, None], 2, 1), atol=1e-6)
    assert evaluate_hands(pred, gt)["rotation_error_deg_median"] == pytest.approx(90.0)
    assert evaluate_hands(gt, gt)["rotation_error_deg_median"] == pytest.approx(0.0, abs=1e-5)


def test_invalid_joints_are_masked():
    rng = np.random.default_rng(7)
    gt = _gt_hands(rng, n=1)
    pred = gt.copy()
    pred[0, 0, 0] += 100.0
    valid = np.ones((1, 2, 21), bool)
    valid[0, 0, 0] = False
    assert summarize(*aligned_errors(pred, gt), joint_valid=valid)["mpjpe"] == pytest.approx(0.0)


def test_crop_image_puts_a_point_where_crop_intrinsics_projects_it():
    """The image crop and the camera crop agree to a tenth of a pixel: a bright spot at a known
    image position lands in the crop where `crop_intrinsics` projects it."""
    from PIL import Image

    from lagchand_edge.data.transforms import crop_image

    spot = np.array([173.3, 121.8])  # continuous pixel coordinates (0, 0 = top-left corner)
    yy, xx = np.mgrid[0:300, 0:400] + 0.5
    image = Image.fromarray((255 * np.exp(-((xx - spot[0]) ** 2 + (yy - spot[1]) ** 2) / (2 * 3.0**2))).astype(np.uint8))
    box = (120.4, 70.2, 128.0)
    crop = np.asarray(crop_image(image.convert("RGB"), box, 256))[..., 0].astype(np.float64)
    cy, cx = np.mgrid[0:256, 0:256] + 0.5
    found = np.array([(crop * cx).sum(), (crop * cy).sum()]) / crop.sum()
    k = cam.intrinsics(np.array([1000.0, 1000.0]), np.array([0.0, 0.0]))
    point = cam.unproject(spot[None], np.array([1000.0]), k)
    np.testing.assert_allclose(found, cam.project(point, crop_intrinsics(k, box, 256))[0], atol=0.1)
