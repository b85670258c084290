import pytest
import torch

from lagchand_edge.train.losses import aligned_loss, edge_loss, heatmap_loss, normal_loss, projection_loss, total_loss, vertex_loss
from lagchand_edge.train.targets import gaussian_heatmaps, lr_at, normalise_hands, weak_perspective

TRIANGLE = torch.tensor([[0, 1, 2]])
FLAT = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])  # normal +z


def test_vertex_and_projection_losses_hand_computed():
    pred = torch.zeros(1, 2, 3)
    gt = torch.tensor([[[1.0, -2.0, 3.0], [0.0, 0.0, 0.0]]])
    assert vertex_loss(pred, gt).item() == pytest.approx(6.0 / 6)
    assert projection_loss(torch.zeros(1, 2, 2), torch.tensor([[[3.0, 4.0], [0.0, 0.0]]])).item() == pytest.approx(25.0 / 2)


def test_normal_loss_is_zero_in_plane_and_counts_out_of_plane_edges():
    assert normal_loss(FLAT, FLAT, TRIANGLE).item() == pytest.approx(0.0)
    lifted = FLAT.clone()
    lifted[0, 2, 2] = 0.5  # third vertex 0.5 above the GT plane
    # edges: v1-v0 (0), v2-v1 (z 0.5), v0-v2 (z -0.5): mean |e.n| = 1/3
    assert normal_loss(lifted, FLAT, TRIANGLE).item() == pytest.approx(1.0 / 3)


def test_edge_loss_hand_computed():
    scaled = FLAT * 2
    # GT edge lengths 1, sqrt2, 1 -> doubled: differences 1, sqrt2, 1
    assert edge_loss(scaled, FLAT, TRIANGLE).item() == pytest.approx((2 + 2**0.5) / 3)


def test_aligned_loss_scores_in_the_protocols_frame():
    gt_j = torch.zeros(1, 2, 21, 3)
    gt_j[..., 20, :] = torch.tensor([0.0, -0.1, 0.0])  # wrist 10 cm below the middle MCP (the root)
    gt_j[..., 0, :] = torch.tensor([0.02, 0.0, 0.0])
    gt_v = torch.tensor([[0.01, 0.03, 0.0], [0.0, -0.05, 0.02]]).expand(1, 2, 2, 3)
    offset = torch.tensor([0.3, 0.0, -0.1])
    # Half the size and shifted: the protocol re-roots and rescales, so nothing is left to penalise.
    assert aligned_loss(gt_j * 0.5 + offset, gt_v * 0.5 + offset, gt_j, gt_v).item() == pytest.approx(0.0, abs=1e-7)
    pred_j = gt_j * 0.5 + offset
    pred_j[..., 0, 0] += 0.01  # 1 cm off at half size -> 2 cm after the rescale, on 1 of 63 coordinates
    assert aligned_loss(pred_j, gt_v * 0.5 + offset, gt_j, gt_v).item() == pytest.approx(0.02 / 63 / 2, rel=1e-4)
    # A collapsed bone is rescaled by at most 3x, not by 1e5.
    collapsed = torch.zeros(1, 2, 21, 3)
    collapsed[..., 20, 1] = -1e-6
    collapsed[..., 0, 0] = 0.01
    joint_error = (abs(0.03 - 0.02) + abs(-3e-6 + 0.1)) / 63
    expected = (joint_error + gt_v.abs().mean().item()) / 2
    assert aligned_loss(collapsed, torch.zeros(1, 2, 2, 3), gt_j, gt_v).item() == pytest.approx(expected, rel=1e-4)


def test_heatmaps_peak_at_the_joint_and_loss():
    joints = torch.tensor([[[[100.5, 36.5]] * 21] * 2])  # (1, 2, 21, 2) crop pixels
    maps = gaussian_heatmaps(joints, 64, 256)
    peak = torch.nonzero(maps[0, 0, 0] == maps[0, 0, 0].max())[0]
    assert peak.tolist() == [9, 25]  # y = 36.5 / 4 - 0.5, x = 100.5 / 4 - 0.5 (pixel centres)
    assert heatmap_loss(maps, maps).item() == 0.0


def test_targets_are_root_relative_and_scaled_to_9_5_cm():
    joints = torch.zeros(1, 2, 21, 3, dtype=torch.float64)
    joints[:, :, 11] = torch.tensor([0.0, 80.0, 0.0])  # middle MCP 80 mm from the wrist (index 20)
    joints[:, 1, 11] = torch.tensor([0.0, 120.0, 0.0])
    vertices = torch.ones(1, 2, 5, 3, dtype=torch.float64)
    j, v = normalise_hands(joints, vertices)
    assert torch.allclose(j[:, :, 11], torch.zeros(1, 2, 3, dtype=torch.float64))
    scale = 0.095 / 100.0
    assert j[0, 0, 20, 1].item() == pytest.approx(-80 * scale)
    assert v[0, 1, 0, 1].item() == pytest.approx((1 - 120) * scale)


def test_weak_perspective_and_schedule():
    points = torch.tensor([[[[0.1, -0.05, 0.3]]]])
    camera = torch.tensor([[[2.0, 0.5, -0.25]]])
    uv = weak_perspective(points, camera, 256) * 256
    assert uv[0, 0, 0].tolist() == pytest.approx([2 * 256 * 0.1 + 64 + 128, 2 * 256 * -0.05 - 32 + 128])
    assert [lr_at(p, 1e-4) for p in (0.0, 0.45, 0.5, 0.95)] == [1e-4, 1e-4, 1e-5, 1e-5]  # the paper's step
    cosine = [lr_at(p, 1e-3, "cosine", warmup=0.1) for p in (0.0, 0.05, 0.1, 0.55, 1.0)]
    assert cosine[0] < 0.02e-3 and cosine[1] == pytest.approx(0.5e-3, rel=0.01) and cosine[2] == pytest.approx(1e-3)
    assert cosine[3] == pytest.approx(0.5e-3) and cosine[4] == pytest.approx(0.0, abs=1e-12)


def test_total_loss_skips_zero_weights():
    pred = {"vertices": FLAT + 0.1, "joints": FLAT, "vertices_2d": torch.zeros(1, 3, 2), "joints_2d": torch.zeros(1, 3, 2)}
    gt = {"vertices": FLAT, "joints": FLAT, "vertices_2d": torch.zeros(1, 3, 2), "joints_2d": torch.zeros(1, 3, 2)}
    result = total_loss(pred, gt, TRIANGLE, {"vertex": 2.0, "joint": 1.0, "heatmap": 0.0})
    assert set(result.terms) == {"vertex", "joint"}
    assert result.total.item() == pytest.approx(2.0 * 0.1)


def test_soft_argmax_reads_the_peak_and_its_loss_moves_mass_towards_the_joint():
    from lagchand_edge.train.losses import heatmap_2d_loss, soft_argmax

    joints = torch.tensor([[[[100.5, 36.5]] * 21] * 2])  # (1, 2, 21, 2) crop pixels
    maps = gaussian_heatmaps(joints, 64, 256) * 3.0  # a confident peak
    assert soft_argmax(maps)[0, 0, 0].tolist() == pytest.approx([100.5 / 256, 36.5 / 256], abs=0.01)
    flat = torch.zeros(1, 2, 21, 64, 64, requires_grad=True)  # the all-zero plateau of an MSE-trained heatmap
    loss = heatmap_2d_loss(flat, joints / 256)
    loss.backward()
    assert loss.item() == pytest.approx((abs(100.5 / 256 - 0.5) + abs(36.5 / 256 - 0.5)) / 2, rel=1e-4)
    step = -flat.grad[0, 0, 0]  # gradient descent raises the map where the joint is, lowers it far away
    assert step[9, 25] > 0 > step[60, 60]
