"""Checkpoints: `.safetensors` weights (never pickle) plus a JSON sidecar with their story.

The weights file's metadata carries the config and hand model, so a checkpoint for another
config or hand is refused with a clear message instead of a shape error deep in torch.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open

from lagchand_edge.errors import UserError
from lagchand_edge.io import atomic_write_bytes, file_sha256, write_safetensors
from lagchand_edge.model import LAGCHand, create_model
from lagchand_edge.model.config import CONFIGS

FORMAT = "lagchand-edge/1"
BUNDLED_NAME = "lagchand_reference.safetensors"


def bundled_checkpoint() -> Path:
    """The reference checkpoint shipped inside the package (the default `--checkpoint`)."""
    return Path(str(resources.files("lagchand_edge") / "assets" / BUNDLED_NAME))


def sidecar_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def save_checkpoint(model: LAGCHand, path: Path, info: dict[str, Any], half: bool = False) -> None:
    """Write weights (fp32, or fp16 with `half`) and the sidecar, each atomically."""
    path = Path(path)
    tensors = {k: (v.half() if half and v.is_floating_point() else v).contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "config": model.cfg.name, "hand_model": model.hand_model_name, "num_vertices": str(model.num_vertices)}
    write_safetensors(path, tensors, metadata)
    sidecar = {**metadata, "config_fields": model.cfg.to_dict(), **info, "sha256": file_sha256(path)}
    atomic_write_bytes(sidecar_path(path), json.dumps(sidecar, indent=2, default=str).encode())


def read_metadata(path: Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    if path.suffix in (".pth", ".pt", ".ckpt", ".bin"):
        raise UserError(f"{path}: lagchand-edge loads .safetensors checkpoints only (pickled files can run code when loaded)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable .safetensors file ({exc})") from None
    if metadata.get("format") != FORMAT:
        raise UserError(f"{path}: not a lagchand-edge checkpoint (metadata format {metadata.get('format')!r})")
    return metadata


def load_checkpoint(path: Path | None = None, config: str | None = None, hands=None) -> LAGCHand:
    """Build the model the checkpoint was trained as and load its weights (eval mode, fp32)."""
    path = Path(path) if path is not None else bundled_checkpoint()
    metadata = read_metadata(path)
    name = metadata["config"]
    if config is not None and config != name:
        raise UserError(f"{path}: checkpoint is for config {name!r}, not {config!r}")
    if name not in CONFIGS:
        raise UserError(f"{path}: unknown config {name!r} in checkpoint")
    model = create_model(name, hands)
    if model.hand_model_name != metadata.get("hand_model") or str(model.num_vertices) != metadata.get("num_vertices"):
        raise UserError(
            f"{path}: checkpoint is for hand model {metadata.get('hand_model')!r} ({metadata.get('num_vertices')} vertices), "
            f"the active one is {model.hand_model_name!r} ({model.num_vertices})"
        )
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{path}: corrupt or truncated checkpoint ({exc})") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    state.setdefault("template", model.template)  # checkpoints from before the template: offsets from zero
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not fit config {name!r}: {str(exc).splitlines()[-1].strip()}") from None
    if missing or unexpected:
        raise UserError(f"{path}: weights do not match config {name!r} (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()


def checkpoint_predictor(path: Path | None = None, hands=None):
    """A checkpoint as a numpy function (float (B, 3, H, W) images in [0, 1] -> vertices, joints,
    camera arrays) for tools that draw its predictions, and the model (faces, input size)."""
    import torch

    from lagchand_edge.model import DeployModel

    model = load_checkpoint(path, hands=hands)
    deploy = DeployModel(model, deployed_form=False).eval()  # the training modules, as evaluate runs them

    def call(images):
        with torch.inference_mode():
            return tuple(t.numpy() for t in deploy(torch.as_tensor(images)))

    return call, model
