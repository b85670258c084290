"""The deployed form computes the training model's function (#25's mapping), in fewer ops."""

import pytest
import torch

from lagchand_edge.checkpoint import load_checkpoint
from lagchand_edge.model import DeployModel, create_model
from lagchand_edge.model.blocks import fold_patches, unfold_patches
from lagchand_edge.model.deploy import DeployGraphLevel, DeployMobileViTv3Block, explicit_norms, fold_tokens, unfold_tokens


@pytest.mark.parametrize("batch", [1, 3])
def test_channel_last_tokens_are_the_patches_transposed(batch):
    x = torch.randn(batch, 5, 8, 6)
    tokens = unfold_tokens(x)  # (B * 4, N, C): each sample's four patch positions, then the next sample's
    patches = unfold_patches(x).permute(0, 2, 3, 1)  # (B, 4, N, C)
    torch.testing.assert_close(tokens, patches.reshape(batch * 4, 12, 5), atol=0, rtol=0)
    torch.testing.assert_close(fold_tokens(tokens, 8, 6), x, atol=0, rtol=0)
    torch.testing.assert_close(fold_patches(tokens.reshape(batch, 4, 12, 5).permute(0, 3, 1, 2), 8, 6), x, atol=0, rtol=0)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("explicit", [False, True], ids=["layer-norm-op", "explicit-means"])
def test_deployed_form_matches_the_training_model(explicit, batch):
    model = load_checkpoint()  # the bundled reference: trained weights, not a random init
    deployed = DeployModel(model)
    if explicit:
        explicit_norms(deployed)
    assert sum(isinstance(m, DeployMobileViTv3Block) for m in deployed.modules()) == 3
    assert sum(isinstance(m, DeployGraphLevel) for m in deployed.modules()) == 3
    images = torch.rand(batch, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got = DeployModel(model, deployed_form=False)(images), deployed(images)
    for name, a, b in zip(("vertices", "joints", "camera"), got, want, strict=True):
        assert _relative(a, b) <= 1e-5, name


def test_deployed_form_shares_the_checkpoint_and_keeps_module_names():
    model = create_model("tiny").eval()
    names = {name for name, _ in DeployModel(model).named_modules()}
    assert {"model.encoder.layers.2", "model.graph", "model.graph.head", "model.camera_head", "model.compact"} <= names
    assert DeployModel(model).model.compact is model.compact  # re-packed where it changes, shared elsewhere
