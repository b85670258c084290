"""The LAGCHand reference model: `create_model(name)` builds any configuration."""

from __future__ import annotations

from lagchand_edge.hand import HandModel, load_hands
from lagchand_edge.model.config import CONFIGS, LAGCHandConfig, get_config
from lagchand_edge.model.lagchand import OUTPUT_NAMES, DeployModel, HandPrediction, LAGCHand

__all__ = ["CONFIGS", "OUTPUT_NAMES", "DeployModel", "HandPrediction", "LAGCHand", "LAGCHandConfig", "create_model", "get_config"]


def create_model(name: str = "reference", hands: dict[str, HandModel] | None = None, **overrides) -> LAGCHand:
    """Build a LAGCHand of the named configuration on the given hands (default: procedural)."""
    return LAGCHand(get_config(name, **overrides), hands or load_hands("procedural"))
