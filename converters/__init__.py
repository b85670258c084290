"""Edge targets. Each module exposes the same small interface:

    NAME, PRECISIONS, MODEL_FILE
    convert(model, example, recipe, out_dir) -> dict   # writes out_dir/MODEL_FILE, returns manifest extras
    open_runner(model_path) -> Runner                   # .run(list[np.ndarray]) -> list[np.ndarray]
    unavailable_reason() -> str | None                  # why this machine cannot run it, if it cannot

Adding a target is one new module and one line in `TARGETS`.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from lagchand_edge.errors import UserError

TARGETS = {"executorch": "converters.executorch", "tflite": "converters.tflite", "coreml": "converters.coreml"}


def get_target(name: str) -> ModuleType:
    if name not in TARGETS:
        raise UserError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)} or 'all'")
    return import_module(TARGETS[name])


def target_for_file(path) -> str | None:
    """The target that runs a foreign model file, by extension."""
    suffix = str(path).lower()
    for name in TARGETS:
        if suffix.endswith(get_target(name).MODEL_FILE.split(".", 1)[1]):
            return name
    return None
