"""`MANOHand`: the user's own MANO_RIGHT.pkl / MANO_LEFT.pkl, read without chumpy or pickle code.

MANO's pickles hold numpy arrays, scipy sparse matrices and chumpy objects. A restricted
unpickler admits only the numpy reconstruction helpers; scipy sparse matrices and chumpy arrays
are rebuilt from their pickled state by this module (no scipy or chumpy code runs), and any
other global (``os.system``, ``builtins.eval``, ...) is refused with a clear error.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from lagchand_edge.errors import UserError
from lagchand_edge.hand.joints import MANO_FINGERTIP_VERTICES, MANO_TO_INTERHAND
from lagchand_edge.hand.skinned import HandModel

_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles store bytes
}
_SPARSE_MODULES = ("scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.csr", "scipy.sparse._csr")
_CHUMPY_MODULES = ("chumpy.ch", "chumpy.reordering", "chumpy.ch_ops")
REQUIRED_KEYS = ("v_template", "f", "weights", "J_regressor", "shapedirs")


class _PickledState:
    """Holds the state of a scipy/chumpy object; nothing of theirs is executed."""

    kind = "object"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {"_": state}


class _SparseState(_PickledState):
    kind = "sparse"


class _ChumpyState(_PickledState):
    kind = "chumpy"


def _reconstructor(cls: type, base: type, state: Any) -> Any:
    """Python 2's `copy_reg._reconstructor`, admitted only for the placeholder classes above."""
    if not (isinstance(cls, type) and issubclass(cls, _PickledState)):
        raise pickle.UnpicklingError(f"refusing to reconstruct {cls!r}")
    return cls()


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            return _reconstructor
        if module in _SPARSE_MODULES and name in ("csc_matrix", "csr_matrix"):
            return _SparseState
        if module in _CHUMPY_MODULES or module.startswith("chumpy"):
            return _ChumpyState
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


MAX_SPARSE_ELEMENTS = 10**7  # MANO's J_regressor is 16 x 778; a hostile header must not allocate gigabytes


def _check_sparse(key: str, path: Path, shape: Any, data: Any, indices: Any, indptr: Any, compressed_rows: bool) -> None:
    """A sparse matrix's parts must describe one: a small 2-D shape, and index arrays that stay inside it."""
    if not (isinstance(shape, tuple) and len(shape) == 2 and all(isinstance(n, int | np.integer) and 0 <= n for n in shape)):
        raise UserError(f"{path}: sparse matrix {key!r} has shape {shape!r}, not two non-negative sizes")
    if shape[0] * shape[1] > MAX_SPARSE_ELEMENTS:
        raise UserError(f"{path}: sparse matrix {key!r} has shape {shape}, far larger than a MANO model's")
    arrays = [np.asarray(a) for a in (data, indices, indptr)]
    outer, inner = (shape[0], shape[1]) if compressed_rows else (shape[1], shape[0])
    data, indices, indptr = arrays
    if not (indices.dtype.kind in "iu" and indptr.dtype.kind in "iu" and data.ndim == indices.ndim == indptr.ndim == 1
            and len(indptr) == outer + 1 and len(data) == len(indices) and indptr[0] == 0 and indptr[-1] == len(indices)
            and (np.diff(indptr) >= 0).all() and ((indices >= 0) & (indices < inner)).all()):
        raise UserError(f"{path}: sparse matrix {key!r} is inconsistent (its index arrays do not fit its shape {shape})")


def _to_array(value: Any, key: str, path: Path) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, _SparseState):
        s = value.state
        try:
            data, indices, indptr, shape = s["data"], s["indices"], s["indptr"], s["_shape"]
        except KeyError as exc:
            raise UserError(f"{path}: sparse matrix {key!r} lacks {exc}") from None
        compressed_rows = s.get("format", "csc") == "csr"
        _check_sparse(key, path, shape, data, indices, indptr, compressed_rows)
        dense = np.zeros(shape)
        for outer in range(len(indptr) - 1):
            inner = indices[indptr[outer] : indptr[outer + 1]]
            values = data[indptr[outer] : indptr[outer + 1]]
            if compressed_rows:
                dense[outer, inner] = values
            else:
                dense[inner, outer] = values
        return dense
    if isinstance(value, _ChumpyState) and isinstance(value.state.get("x"), np.ndarray):
        return value.state["x"]
    if isinstance(value, (list, tuple)):
        return np.asarray(value)
    raise UserError(f"{path}: {key!r} is a {type(value).__name__}, not an array MANO stores")


def read_mano_pickle(path: str | Path) -> dict[str, np.ndarray]:
    """Arrays of a MANO pickle, refusing anything that is not numpy/scipy/chumpy data."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: MANO file not found")
    try:
        raw = _RestrictedUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path}: not a MANO model ({exc})") from None
    except Exception as exc:  # truncated or not a pickle at all
        raise UserError(f"{path}: cannot read as a MANO pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a dict of arrays, found {type(raw).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise UserError(f"{path}: missing MANO keys {missing}")
    wanted = REQUIRED_KEYS + ("posedirs", "hands_mean", "hands_components")
    return {k: _to_array(raw[k], k, path) for k in wanted if k in raw}


def mano_hand(path: str | Path, side: str, flat_hand_mean: bool = False) -> HandModel:
    """A `HandModel` from one MANO pickle; `flat_hand_mean=False` matches InterHand2.6M's fits."""
    arrays = read_mano_pickle(path)
    template = arrays["v_template"]
    shapedirs = arrays["shapedirs"][..., :10]
    num_vertices = template.shape[0]
    if shapedirs.shape[:2] != (num_vertices, 3):
        raise UserError(f"{path}: shapedirs has shape {shapedirs.shape}, expected ({num_vertices}, 3, 10)")
    regressor16 = arrays["J_regressor"]
    tips = np.zeros((5, num_vertices))
    if num_vertices <= max(MANO_FINGERTIP_VERTICES):
        raise UserError(f"{path}: {num_vertices} vertices; MANO has 778")
    tips[np.arange(5), list(MANO_FINGERTIP_VERTICES)] = 1.0
    regressor21 = np.concatenate([regressor16, tips])[list(MANO_TO_INTERHAND)]
    hands_mean = None if flat_hand_mean else arrays.get("hands_mean")
    return HandModel(
        name="mano",
        side=side,
        template=template,
        faces=arrays["f"].astype(np.int64),
        skin_weights=arrays["weights"],
        shapedirs=shapedirs,
        posedirs=arrays.get("posedirs"),
        joint_regressor16=regressor16,
        joint_regressor=regressor21,
        hands_mean=hands_mean,
    )


def load_mano_pair(mano_dir: str | Path, flat_hand_mean: bool = False) -> dict[str, HandModel]:
    """Both MANO hands from a folder holding MANO_RIGHT.pkl and MANO_LEFT.pkl.

    Fixes the published left model's known sign error: when the left model's first shape
    direction's x-column equals the right model's, it is negated (as public MANO loaders do).
    """
    mano_dir = Path(mano_dir)
    hands = {side: mano_hand(mano_dir / f"MANO_{side.upper()}.pkl", side, flat_hand_mean) for side in ("left", "right")}
    left, right = hands["left"], hands["right"]
    if left.shapedirs.shape == right.shapedirs.shape and np.abs(left.shapedirs[:, 0, :] - right.shapedirs[:, 0, :]).sum() < 1.0:
        left.shapedirs[:, 0, :] *= -1
    return hands
