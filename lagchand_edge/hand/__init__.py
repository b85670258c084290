"""Hand models (procedural or the user's MANO) and the mesh graph hierarchy built on them.

`HandModel`, `HandOutput` and `load_hands` load on first use, so that `lagchand_edge.hand.joints`
(the joint orders, plain constants) imports without torch: the predict app needs only those.
"""

from __future__ import annotations

from importlib import import_module

__all__ = ["HandModel", "HandOutput", "load_hands"]
_HOMES = {"HandModel": "lagchand_edge.hand.skinned", "HandOutput": "lagchand_edge.hand.skinned", "load_hands": "lagchand_edge.hand.loading"}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
