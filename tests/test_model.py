import numpy as np
import pytest
import torch

from lagchand_edge.hand import load_hands
from lagchand_edge.hand.joints import HAND_NAMES
from lagchand_edge.hand.mesh_graph import build_hierarchy
from lagchand_edge.model import CONFIGS, DeployModel, HandPrediction, create_model
from lagchand_edge.model.blocks import fold_patches, unfold_patches
from lagchand_edge.model.flops import PAPER_GMACS, count_model, deployed_macs


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_output_shapes_and_dtypes(name):
    model = create_model(name).eval()
    with torch.no_grad():
        vertices, joints, camera, heatmaps = model(torch.rand(2, 3, 256, 256))
    assert vertices.shape == (2, 2, 780, 3) and joints.shape == (2, 2, 21, 3)
    assert camera.shape == (2, 2, 3) and heatmaps.shape == (2, 2, 21, 64, 64)
    assert all(t.dtype == torch.float32 for t in (vertices, joints, camera, heatmaps))
    # Root-relative at the middle-finger MCP (InterHand index 11).
    torch.testing.assert_close(joints[:, :, 11], torch.zeros(2, 2, 3), atol=1e-6, rtol=0)


def test_inference_skips_the_training_heatmaps_and_keeps_the_outputs():
    model = create_model("tiny").eval()
    image = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        full, deployed = model(image), DeployModel(model, deployed_form=False)(image)
        assert model(image, with_heatmaps=False)[3] is None
    for a, b in zip(full[:3], deployed, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    # the 64 px stage and heatmap head are what the deployed graph leaves out
    c = model.cfg
    skipped = 64 * 64 * (c.decoder_channels[2] + c.encoder.stages[1].channels) * c.decoder_channels[3] * 9 + 64 * 64 * c.decoder_channels[3] * 42
    assert count_model(model)["modules"][-1]["macs"] - count_model(model, with_heatmaps=False)["modules"][-1]["macs"] == skipped


def test_patch_unfold_fold_round_trip():
    x = torch.arange(2 * 3 * 8 * 6, dtype=torch.float32).reshape(2, 3, 8, 6)
    patches = unfold_patches(x)
    assert patches.shape == (2, 3, 4, 12)
    torch.testing.assert_close(patches[0, 0, :, 0], x[0, 0, :2, :2].reshape(-1))
    torch.testing.assert_close(fold_patches(patches, 8, 6), x)


def test_reference_macs_match_the_paper():
    report = count_model(create_model("reference"))
    assert report["gmacs"] == pytest.approx(PAPER_GMACS, rel=0.04)  # 0.784 vs 0.81: the README explains the 3.2%
    assert round(report["gmacs"], 3) == 0.784 and round(deployed_macs(create_model("reference")) / 1e9, 3) == 0.655  # README's figures
    names = [row["module"] for row in report["modules"]]
    assert names[:3] == ["Linear Attention Encoder", "Compact Single Hand Heatmap", "Linear Graph"]
    assert report["modules"][-1]["flops"] == 2 * report["modules"][-1]["macs"]
    assert count_model(create_model("reference-mhsa"))["gmacs"] > report["gmacs"]


@pytest.mark.parametrize("name", ["tiny", "reference"])
def test_torch_export_with_static_shapes(name):
    model = DeployModel(create_model(name).eval())
    x = torch.rand(1, 3, 256, 256)
    exported = torch.export.export(model, (x,), strict=True)
    ops = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert not any("sparse" in op for op in ops)
    with torch.no_grad():
        for got, want in zip(exported.module()(x), model(x), strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_hand_prediction_projection_matches_the_training_camera():
    from lagchand_edge.train.targets import weak_perspective

    model = create_model("tiny").eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 256, 256))
    pred = HandPrediction.from_outputs(out)
    joints_2d, _ = pred.project(256)
    np.testing.assert_allclose(joints_2d / 256, weak_perspective(out[1], out[2], 256).numpy(), atol=1e-5)


def test_graph_follows_the_active_hand_model():
    hands = load_hands()
    model = create_model("tiny", hands)
    to_mesh = torch.as_tensor(build_hierarchy(hands["right"]).to_mesh)
    points = torch.randn(2, 2, to_mesh.shape[1], 3, dtype=torch.float64)
    vertices = torch.einsum("vn,bhnc->bhvc", to_mesh, points)
    np.testing.assert_allclose(model.graph.to_mesh.double()(points).numpy(), vertices.numpy(), atol=1e-6)
    dense = torch.as_tensor(np.stack([hands[side].joint_regressor for side in HAND_NAMES]))
    joints = model.joint_regressor.double()(vertices)
    np.testing.assert_allclose(joints.numpy(), torch.einsum("hjv,bhvc->bhjc", dense, vertices).numpy(), atol=1e-6)
