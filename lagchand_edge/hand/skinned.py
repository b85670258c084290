"""`HandModel`: a skinned hand mesh with MANO's parameter layout (pose 48, shape 10, trans 3).

Both the user's MANO files and the built-in procedural hand become one of these, so the data
reader, the graph decoder and the losses never care which hand is active.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lagchand_edge.hand.joints import MANO_PARENTS, NUM_MANO_JOINTS


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula for (..., 3) axis-angle vectors -> (..., 3, 3), safe at zero angle."""
    angle = torch.linalg.vector_norm(axis_angle, dim=-1, keepdim=True).clamp_min(1e-8)
    axis = axis_angle / angle
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*x.shape, 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand_as(skew)
    sin = torch.sin(angle)[..., None]
    cos = torch.cos(angle)[..., None]
    return eye + sin * skew + (1 - cos) * (skew @ skew)


@dataclass
class HandOutput:
    """Posed hand in the model's units (metres): vertices (B, V, 3), joints (B, 21, 3)."""

    vertices: torch.Tensor
    joints: torch.Tensor


class HandModel:
    """A linear-blend-skinned hand with MANO's layout.

    Arrays (numpy, float64 where geometric):
      template (V, 3), faces (F, 3) int, skin_weights (V, 16), shapedirs (V, 3, 10),
      posedirs (V, 3, 135) or None, joint_regressor16 (16, V) for the kinematic joints,
      joint_regressor (21, V) for the 21 evaluation joints in InterHand2.6M order,
      hands_mean (45,) added to the finger pose (MANO's flat_hand_mean=False), side 'left'/'right'.
    """

    def __init__(
        self,
        *,
        name: str,
        side: str,
        template: np.ndarray,
        faces: np.ndarray,
        skin_weights: np.ndarray,
        shapedirs: np.ndarray,
        joint_regressor16: np.ndarray,
        joint_regressor: np.ndarray,
        posedirs: np.ndarray | None = None,
        hands_mean: np.ndarray | None = None,
    ) -> None:
        num_vertices = template.shape[0]
        expected = {
            "template": (template.shape, (num_vertices, 3)),
            "skin_weights": (skin_weights.shape, (num_vertices, NUM_MANO_JOINTS)),
            "shapedirs": (shapedirs.shape[:2], (num_vertices, 3)),
            "joint_regressor16": (joint_regressor16.shape, (NUM_MANO_JOINTS, num_vertices)),
            "joint_regressor": (joint_regressor.shape, (21, num_vertices)),
        }
        for key, (got, want) in expected.items():
            if tuple(got) != tuple(want):
                raise ValueError(f"{name}: {key} has shape {tuple(got)}, expected {want}")
        if side not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right', got {side!r}")
        self.name = name
        self.side = side
        self.template = np.asarray(template, np.float64)
        self.faces = np.asarray(faces, np.int64)
        self.skin_weights = np.asarray(skin_weights, np.float64)
        self.shapedirs = np.asarray(shapedirs, np.float64)
        self.posedirs = None if posedirs is None else np.asarray(posedirs, np.float64)
        self.joint_regressor16 = np.asarray(joint_regressor16, np.float64)
        self.joint_regressor = np.asarray(joint_regressor, np.float64)
        self.hands_mean = np.zeros(45) if hands_mean is None else np.asarray(hands_mean, np.float64)
        self._torch_cache: dict[tuple, dict[str, torch.Tensor]] = {}

    @property
    def num_vertices(self) -> int:
        return self.template.shape[0]

    def _tensors(self, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
        key = (dtype, str(device))
        if key not in self._torch_cache:
            arrays = {
                "template": self.template,
                "skin_weights": self.skin_weights,
                "shapedirs": self.shapedirs,
                "joint_regressor16": self.joint_regressor16,
                "joint_regressor": self.joint_regressor,
                "hands_mean": self.hands_mean,
            }
            if self.posedirs is not None:
                arrays["posedirs"] = self.posedirs
            self._torch_cache[key] = {
                k: torch.as_tensor(v, dtype=dtype, device=device) for k, v in arrays.items()
            }
        return self._torch_cache[key]

    def forward(
        self,
        pose: torch.Tensor,
        shape: torch.Tensor,
        trans: torch.Tensor | None = None,
    ) -> HandOutput:
        """Pose (B, 48) axis-angle, shape (B, 10), trans (B, 3) -> vertices and 21 joints (metres).

        MANO's semantics: the global rotation turns the hand about its wrist joint, and `trans`
        is added afterwards; `hands_mean` is added to the 45 finger-pose values.
        """
        if pose.ndim != 2 or pose.shape[1] != 48:
            raise ValueError(f"pose must be (B, 48), got {tuple(pose.shape)}")
        if shape.ndim != 2 or shape.shape[1] != 10:
            raise ValueError(f"shape must be (B, 10), got {tuple(shape.shape)}")
        t = self._tensors(pose.dtype, pose.device)
        batch = pose.shape[0]
        full_pose = pose.clone()
        full_pose[:, 3:] = full_pose[:, 3:] + t["hands_mean"]
        rotations = axis_angle_to_matrix(full_pose.reshape(batch, NUM_MANO_JOINTS, 3))

        shaped = t["template"] + torch.einsum("vck,bk->bvc", t["shapedirs"], shape)
        rest_joints = torch.einsum("jv,bvc->bjc", t["joint_regressor16"], shaped)
        if "posedirs" in t:
            eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
            pose_feature = (rotations[:, 1:] - eye).reshape(batch, -1)
            shaped = shaped + torch.einsum("vcp,bp->bvc", t["posedirs"], pose_feature)

        transforms = self._chain(rotations, rest_joints)
        # Move each joint's transform so that it acts on rest-pose coordinates.
        offset = torch.einsum("bjrc,bjc->bjr", transforms[:, :, :3, :3], rest_joints)
        transforms = transforms.clone()
        transforms[:, :, :3, 3] = transforms[:, :, :3, 3] - offset
        blended = torch.einsum("vj,bjrc->bvrc", t["skin_weights"], transforms)
        vertices = torch.einsum("bvrc,bvc->bvr", blended[:, :, :3, :3], shaped) + blended[:, :, :3, 3]
        if trans is not None:
            vertices = vertices + trans[:, None, :]
        joints = torch.einsum("jv,bvc->bjc", t["joint_regressor"], vertices)
        return HandOutput(vertices=vertices, joints=joints)

    @staticmethod
    def _chain(rotations: torch.Tensor, rest_joints: torch.Tensor) -> torch.Tensor:
        """World transforms (B, 16, 4, 4) of the kinematic tree from local rotations."""
        batch = rotations.shape[0]
        local = torch.zeros(batch, NUM_MANO_JOINTS, 4, 4, dtype=rotations.dtype, device=rotations.device)
        local[:, :, :3, :3] = rotations
        local[:, :, 3, 3] = 1
        parents = torch.tensor(MANO_PARENTS[1:], device=rotations.device)
        relative = rest_joints.clone()
        relative[:, 1:] = rest_joints[:, 1:] - rest_joints[:, parents]
        local[:, :, :3, 3] = relative
        world = [local[:, 0]]
        for j in range(1, NUM_MANO_JOINTS):
            world.append(world[MANO_PARENTS[j]] @ local[:, j])
        return torch.stack(world, dim=1)

    def forward_numpy(self, pose: np.ndarray, shape: np.ndarray, trans: np.ndarray | None = None) -> HandOutput:
        """Convenience wrapper for single or batched numpy parameters (float64 maths)."""
        pose_t = torch.as_tensor(np.atleast_2d(pose), dtype=torch.float64)
        shape_t = torch.as_tensor(np.atleast_2d(shape), dtype=torch.float64)
        trans_t = None if trans is None else torch.as_tensor(np.atleast_2d(trans), dtype=torch.float64)
        with torch.no_grad():
            return self.forward(pose_t, shape_t, trans_t)
