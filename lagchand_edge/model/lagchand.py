"""LAGCHand (paper Fig. 1): encoder -> compact heatmap module -> linear graph -> both hands."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lagchand_edge.data.transforms import IMAGENET_MEAN, IMAGENET_STD, weak_perspective_px
from lagchand_edge.hand import HandModel
from lagchand_edge.hand.joints import HAND_NAMES, MIDDLE_MCP
from lagchand_edge.hand.mesh_graph import build_hierarchy
from lagchand_edge.model.compact import CompactSingleHandHeatmap
from lagchand_edge.model.config import LAGCHandConfig
from lagchand_edge.model.deploy import deploy_form
from lagchand_edge.model.encoder import LinearAttentionEncoder
from lagchand_edge.model.graph import LinearGraph
from lagchand_edge.model.sparse import SparseRows

#: Names of the deployed outputs, in order: every runtime returns these.
OUTPUT_NAMES = ("vertices", "joints", "camera")
#: Initial weak-perspective scale: v2d = s * 256 * v[:2] + t * 128 + 128 (v in normalised metres).
CAMERA_SCALE_INIT = 2.0


@dataclass
class HandPrediction:
    """Per-hand outputs (hand axis: 0 left, 1 right): root-relative metres (MCP root)."""

    vertices: np.ndarray  # (B, 2, V, 3)
    joints: np.ndarray  # (B, 2, 21, 3)
    camera: np.ndarray  # (B, 2, 3): scale, tx, ty

    @classmethod
    def from_outputs(cls, outputs) -> HandPrediction:
        arrays = [o.detach().cpu().numpy() if isinstance(o, torch.Tensor) else np.asarray(o) for o in outputs[:3]]
        return cls(*(a.astype(np.float32) for a in arrays))

    def project(self, image_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """2D joints and vertices in the crop by the weak-perspective camera."""
        return weak_perspective_px(self.joints, self.camera, image_size), weak_perspective_px(self.vertices, self.camera, image_size)


class LAGCHand(nn.Module):
    """Input: (B, 3, 256, 256) RGB in [0, 1] (ImageNet normalisation happens inside).

    forward -> (vertices (B,2,V,3), joints (B,2,21,3), camera (B,2,3), heatmaps (B,2,21,64,64) or
    None with `with_heatmaps=False`).
    """

    def __init__(self, cfg: LAGCHandConfig, hands: dict[str, HandModel]) -> None:
        super().__init__()
        self.cfg = cfg
        self.hand_model_name = hands["right"].name
        self.num_vertices = hands["right"].num_vertices
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False)
        self.joint_regressor = SparseRows(np.stack([hands[side].joint_regressor for side in HAND_NAMES]))
        # the meshes' triangles (hand axis as everywhere: left, right), for pictures; no part of the computation
        self.register_buffer("faces", torch.as_tensor(np.stack([hands[side].faces for side in HAND_NAMES])), persistent=False)
        self.encoder = LinearAttentionEncoder(cfg.encoder)
        self.compact = CompactSingleHandHeatmap(cfg, self.encoder.out_channels)
        self.graph = LinearGraph(cfg, build_hierarchy(hands["right"]))
        self.camera_head = nn.Linear(cfg.hand_dim, 3)
        nn.init.zeros_(self.camera_head.weight)
        with torch.no_grad():
            self.camera_head.bias.copy_(torch.tensor([CAMERA_SCALE_INIT, 0.0, 0.0]))
        # The graph decoder predicts offsets from these hands (B-independent, normalised metres): a
        # training run from scratch sets them to its data's mean hands, so it starts at the mean-pose
        # baseline instead of a point cloud at the origin. Checkpoints made before it hold zeros.
        self.register_buffer("template", torch.zeros(2, self.num_vertices, 3))

    def set_template(self, vertices: torch.Tensor) -> None:
        """Start from these (2, V, 3) mean hands: the decoder's last layer is zeroed so that its
        first output is exactly them."""
        self.template.copy_(vertices.reshape(self.template.shape))
        nn.init.zeros_(self.graph.head.weight)
        nn.init.zeros_(self.graph.head.bias)

    def forward(self, image: torch.Tensor, with_heatmaps: bool = True):
        x = (image - self.mean) / self.std
        features = self.encoder(x)
        _, hand_features, bound, heatmaps = self.compact(features, with_heatmaps)
        vertices = self.graph(hand_features, bound) + self.template
        joints = self.joint_regressor(vertices)
        root = joints[:, :, MIDDLE_MCP : MIDDLE_MCP + 1, :]
        camera = self.camera_head(hand_features)
        return vertices - root, joints - root, camera, heatmaps


class DeployModel(nn.Module):
    """What goes to devices: the three outputs of `OUTPUT_NAMES`, no training heatmaps.

    By default in the deployed form (`model.deploy`: the same function in fewer, larger ops);
    `deployed_form=False` keeps the training modules (the FP32 reference and eager PyTorch).
    `int8_embeddings`: a copy of the model whose embedding tables are int8 (int8 artifacts).
    `channels_last_input`: the image comes as (B, H, W, 3), as camera frames do (`convert --input nhwc`).
    """

    def __init__(self, model: LAGCHand, int8_embeddings: bool = False, deployed_form: bool = True, channels_last_input: bool = False) -> None:
        super().__init__()
        if int8_embeddings:
            model = copy.deepcopy(model)
            model.graph.int8_embeddings()
        self.model = deploy_form(model) if deployed_form else model
        self.channels_last_input = channels_last_input

    def forward(self, image: torch.Tensor):
        if self.channels_last_input:
            image = image.permute(0, 3, 1, 2)
        vertices, joints, camera, _ = self.model(image, with_heatmaps=False)
        return vertices, joints, camera
