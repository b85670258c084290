"""`load_hands`: both hands of the procedural model (built in) or of the user's MANO files."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lagchand_edge.errors import UserError
from lagchand_edge.hand.procedural import build_procedural_hand
from lagchand_edge.hand.skinned import HandModel


@lru_cache(maxsize=4)
def _procedural_pair() -> dict[str, HandModel]:
    return {side: build_procedural_hand(side) for side in ("left", "right")}


def load_hands(name: str = "procedural", mano_dir: str | Path | None = None) -> dict[str, HandModel]:
    """Both hands of the named model: 'procedural' (built in) or 'mano' (needs `mano_dir`)."""
    if name == "procedural":
        return _procedural_pair()
    if name == "mano":
        if mano_dir is None:
            raise UserError("the MANO hand model needs --mano-dir pointing at MANO_RIGHT.pkl / MANO_LEFT.pkl")
        from lagchand_edge.hand.mano import load_mano_pair

        return load_mano_pair(mano_dir)
    raise UserError(f"unknown hand model {name!r}; choose 'procedural' or 'mano'")
