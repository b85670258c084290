import pickle
import sys
import types

import numpy as np
import pytest
import torch

from lagchand_edge.errors import UserError
from lagchand_edge.hand import load_hands
from lagchand_edge.hand.joints import (
    INTERHAND_JOINT_NAMES,
    INTERHAND_TO_INTAGHAND,
    MANO_JOINT_NAMES,
    MIDDLE_MCP,
    WRIST,
    root_index,
)
from lagchand_edge.hand.mano import load_mano_pair, read_mano_pickle
from lagchand_edge.hand.mesh_graph import build_hierarchy


def test_interhand_joint_order_and_roots():
    assert INTERHAND_JOINT_NAMES[:4] == ("thumb4", "thumb3", "thumb2", "thumb1")
    assert INTERHAND_JOINT_NAMES[WRIST] == "wrist" and WRIST == 20
    assert INTERHAND_JOINT_NAMES[MIDDLE_MCP] == "middle1"
    assert INTERHAND_TO_INTAGHAND[9] == MIDDLE_MCP  # IntagHand's root joint 9 is the middle MCP
    assert root_index("mcp") == 11 and root_index("wrist") == 20
    with pytest.raises(ValueError):
        root_index("elbow")


def _edges_per_face_count(faces):
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1)
    return np.unique(edges, axis=0, return_counts=True)[1]


def _signed_volume(vertices, faces):
    v = vertices[faces]
    return np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6


def test_procedural_hand_is_a_closed_mano_sized_mesh():
    hands = load_hands()
    for hand in hands.values():
        assert 700 <= hand.num_vertices <= 860
        assert set(_edges_per_face_count(hand.faces)) == {2}  # watertight
        assert _signed_volume(hand.template, hand.faces) > 0  # outward normals on both sides
        np.testing.assert_allclose(hand.skin_weights.sum(1), 1.0)
    np.testing.assert_allclose(hands["left"].template[:, 0], -hands["right"].template[:, 0])


def test_rest_pose_joints_and_metacarpal_length():
    hand = load_hands()["right"]
    out = hand.forward_numpy(np.zeros(48), np.zeros(10))
    np.testing.assert_allclose(out.vertices[0].numpy(), hand.template, atol=1e-12)
    joints = out.joints[0].numpy()
    assert np.linalg.norm(joints[MIDDLE_MCP] - joints[WRIST]) == pytest.approx(0.095, abs=0.004)
    tips = [4 * f for f in range(5)]
    assert (joints[tips, 1] > joints[WRIST, 1] + 0.09).all()  # tips far from the wrist along +y


def test_global_rotation_turns_the_hand_about_the_wrist():
    hand = load_hands()["right"]
    rest = hand.forward_numpy(np.zeros(48), np.zeros(10)).joints[0].numpy()
    pose = np.zeros(48)
    pose[:3] = [0, 0, np.pi / 2]
    turned = hand.forward_numpy(pose, np.zeros(10)).joints[0].numpy()
    wrist_fk = rest[WRIST]
    rot = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])
    np.testing.assert_allclose(turned, (rest - wrist_fk) @ rot.T + wrist_fk, atol=2e-3)


def test_finger_flexion_bends_towards_the_palm_and_is_differentiable():
    hand = load_hands()["right"]
    pose = torch.zeros(1, 48, dtype=torch.float64, requires_grad=True)
    flexed = pose.clone()
    j = MANO_JOINT_NAMES.index("index2")
    flexed = flexed + torch.nn.functional.one_hot(torch.tensor(3 * j), 48).double() * -1.2
    out = hand.forward(flexed, torch.zeros(1, 10, dtype=torch.float64))
    index_tip = INTERHAND_JOINT_NAMES.index("index4")
    assert out.joints[0, index_tip, 2] < -0.02  # palm side is -z
    out.joints[0, index_tip, 2].backward()
    assert pose.grad.abs().sum() > 0


def test_shape_coefficient_zero_changes_overall_size():
    hand = load_hands()["right"]
    small = hand.forward_numpy(np.zeros(48), -2 * np.eye(10)[0]).joints[0].numpy()
    large = hand.forward_numpy(np.zeros(48), 2 * np.eye(10)[0]).joints[0].numpy()
    bone = lambda j: np.linalg.norm(j[MIDDLE_MCP] - j[WRIST])  # noqa: E731
    assert bone(large) / bone(small) == pytest.approx(1.12 / 0.88, rel=0.02)


def test_graph_hierarchy_doubles_and_rebuilds_the_template():
    hand = load_hands()["right"]
    graph = build_hierarchy(hand)
    sizes = [level.num_nodes for level in graph.levels]
    assert sizes[1] == 2 * sizes[0] and sizes[2] == 2 * sizes[1]
    assert [u.shape for u in graph.upsample] == [(sizes[1], sizes[0]), (sizes[2], sizes[1])]
    np.testing.assert_allclose(graph.to_mesh.sum(1), 1.0, atol=1e-9)
    error = np.linalg.norm(graph.to_mesh @ graph.levels[-1].positions - hand.template, axis=1)
    assert error.mean() < 0.0015  # metres
    for level in graph.levels:
        np.testing.assert_allclose(level.adjacency, level.adjacency.T)


# --- MANO files, read with the restricted unpickler -------------------------------------------


class _FakeChumpyCh:
    """Pickles as `chumpy.ch.Ch` with the attribute layout chumpy uses (`x` holds the array)."""

    def __init__(self, x):
        self.x = x

    def __reduce__(self):
        return (_FakeChumpyCh, (), {"x": self.x})


def _write_mano_like(path, hand, csc=True):
    import scipy.sparse

    chumpy = types.ModuleType("chumpy.ch")
    chumpy.Ch = _FakeChumpyCh
    _FakeChumpyCh.__module__, _FakeChumpyCh.__qualname__ = "chumpy.ch", "Ch"
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = types.ModuleType("chumpy"), chumpy
    try:
        data = {
            "v_template": hand.template,
            "f": hand.faces.astype(np.uint32),
            "weights": hand.skin_weights,
            "J_regressor": scipy.sparse.csc_matrix(hand.joint_regressor16) if csc else hand.joint_regressor16,
            "shapedirs": _FakeChumpyCh(hand.shapedirs.copy()),
            "hands_mean": np.zeros(45),
        }
        path.write_bytes(pickle.dumps(data, protocol=2))
    finally:
        del sys.modules["chumpy.ch"], sys.modules["chumpy"]


def test_mano_pickle_loads_without_chumpy_or_scipy_code(tmp_path):
    import pickletools

    hand = load_hands()["right"]
    _write_mano_like(tmp_path / "MANO_RIGHT.pkl", hand)
    _write_mano_like(tmp_path / "MANO_LEFT.pkl", hand)
    assert "chumpy.ch" in " ".join(str(op) for op in pickletools.genops((tmp_path / "MANO_RIGHT.pkl").read_bytes()))
    arrays = read_mano_pickle(tmp_path / "MANO_RIGHT.pkl")
    np.testing.assert_allclose(arrays["J_regressor"], hand.joint_regressor16)
    np.testing.assert_allclose(arrays["shapedirs"], hand.shapedirs)
    pair = load_mano_pair(tmp_path)
    # Known sign error of the published left model: equal x-columns get negated.
    np.testing.assert_allclose(pair["left"].shapedirs[:, 0, :], -hand.shapedirs[:, 0, :])
    np.testing.assert_allclose(pair["right"].shapedirs[:, 0, :], hand.shapedirs[:, 0, :])
    out = pair["right"].forward_numpy(np.zeros(48), np.zeros(10))
    assert out.joints.shape == (1, 21, 3)


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /tmp/lagchand_pwned",))


def test_restricted_unpickler_refuses_code(tmp_path):
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(pickle.dumps({"v_template": _Exploit()}))
    with pytest.raises(UserError, match="refusing to load global"):
        read_mano_pickle(path)


def test_mano_pickle_with_unexpected_contents(tmp_path):
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(pickle.dumps({"v_template": np.zeros((5, 3))}))
    with pytest.raises(UserError, match="missing MANO keys"):
        read_mano_pickle(path)
    path.write_bytes(b"\x80\x02not really")
    with pytest.raises(UserError, match="MANO_RIGHT.pkl: (not a MANO model|cannot read)"):
        read_mano_pickle(path)
    with pytest.raises(UserError, match="needs --mano-dir"):
        load_hands("mano")


@pytest.mark.parametrize("edit, message", [
    (lambda m: setattr(m, "_shape", (10**6, 10**6)), "far larger than a MANO model's"),
    (lambda m: setattr(m, "_shape", (16, -3)), "not two non-negative sizes"),
    (lambda m: m.indices.__setitem__(0, 10**6), "inconsistent"),
    (lambda m: setattr(m, "indptr", m.indptr[:-2]), "inconsistent"),
], ids=["huge", "negative", "index-outside", "short-indptr"])
def test_mano_sparse_matrices_must_describe_themselves_honestly(tmp_path, monkeypatch, edit, message):
    """A hostile header must not make the reader allocate gigabytes or write outside the matrix."""
    import scipy.sparse

    hand = load_hands()["right"]
    original = scipy.sparse.csc_matrix

    def tampered(values):
        matrix = original(values)
        edit(matrix)
        return matrix

    monkeypatch.setattr(scipy.sparse, "csc_matrix", tampered)
    _write_mano_like(tmp_path / "MANO_RIGHT.pkl", hand)
    with pytest.raises(UserError, match=message):
        read_mano_pickle(tmp_path / "MANO_RIGHT.pkl")
