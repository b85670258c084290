"""Edge targets. Every target-specific fact lives in its module, behind the same interface:

    NAME, PRECISIONS, MODEL_FILE
    EXTRA, CONVERT_PACKAGES, RUN_PACKAGES   # the pip extra that installs it; import names converting / running need
    INT8_PLAN                  # the target's default int8 plan (calibration.plans.Int8Plan)
    OBSERVERS                  # activation observers --observer may choose (empty: no choice)
    LATENCY_UNAVAILABLE        # why `profile` cannot time it on this machine, or None
    QAT_UNAVAILABLE            # why it has no QAT path, or None (then qat_scheme exists)
    QAT_STUDENT                # None: QAT trains this target's own int8 graph; or the target whose graph it trains, whose
                               # weights it then converts, calibrating its own activations (LiteRT's trains ExecuTorch's)
                               # The student's module has qat_quantizer/quantizable_graph and ptq_quantizer: the PTQ whose
                               # calibration QAT starts from; and ptq_graph(model, example, calibration, plan): the int8
                               # graph that PTQ converts, which the QAT student is compared with
    write_model(model, example, recipe, out_dir) -> dict   # writes out_dir/MODEL_FILE, returns manifest extras
    open_runner(model_path, threads) -> Runner             # .run(list[np.ndarray]) -> list[np.ndarray]; threads None: the runtime's choice

Adding a target is one new module and one line in `TARGETS`; nothing outside this package names one.
"""

from __future__ import annotations

from importlib import import_module
from importlib.util import find_spec
from types import ModuleType

from converters.recipe import ConversionError
from lagchand_edge.errors import UserError

TARGETS = {"executorch": "converters.executorch", "tflite": "converters.tflite", "coreml": "converters.coreml"}
#: the artifact (target, precision) that the drift report measures reference interpreters against
SPEED_BASELINE = ("executorch", "fp32")
#: runtimes that are reference interpreters, as their runners name themselves (their speed is no device's)
INTERPRETERS = ("coreml-sim",)


def get_target(name: str) -> ModuleType:
    if name not in TARGETS:
        raise UserError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)} or 'all'")
    return import_module(TARGETS[name])


def missing_extra(target: ModuleType, packages: tuple[str, ...]) -> str | None:
    """One line naming the pip extra to install when any of `packages` (import names) is absent."""
    missing = [name for name in packages if find_spec(name) is None]
    if not missing:
        return None
    return f"the {target.NAME} target needs {', '.join(missing)} (not installed): pip install 'lagchand-edge[{target.EXTRA}]'"


def _converter_missing(name: str) -> str | None:
    target = get_target(name)
    return missing_extra(target, target.CONVERT_PACKAGES)


def convertible() -> list[str]:
    """Targets whose converter packages are installed here (every one with `pip install 'lagchand-edge[all]'`)."""
    return [name for name in TARGETS if _converter_missing(name) is None]


def check_convertible(names: list[str]) -> None:
    """UserError naming the extra when a planned target's converter packages are absent (before any work)."""
    for name in names:
        reason = _converter_missing(name)
        if reason:
            raise UserError(f"cannot convert for {name}: {reason}")


class RuntimeMissing(UserError):
    """This machine lacks a target's runtime package (`reason` names the extra to install): the
    one failure to open a model that is not the model's own."""

    def __init__(self, where, target: ModuleType, reason: str) -> None:
        super().__init__(f"{where}: cannot run {target.NAME} here: {reason}")
        self.reason = reason


def open_model(target: ModuleType, model_path, where, threads: int | None = None) -> object:
    """`target`'s runner on `model_path` (on `threads` CPU threads; None: the runtime's choice), or
    one UserError naming `where` (the artifact) when this machine cannot run the target
    (`RuntimeMissing`) or the model will not open (the toolkit and the predict app alike)."""
    reason = missing_extra(target, target.RUN_PACKAGES)
    if reason:
        raise RuntimeMissing(where, target, reason)
    try:
        return target.open_runner(model_path, threads)
    except (ConversionError, RuntimeError, ValueError) as exc:
        raise UserError(f"{model_path}: cannot open ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def target_for_file(path) -> str | None:
    """The target that runs a foreign model file, by extension."""
    suffix = str(path).lower()
    for name in TARGETS:
        if suffix.endswith(get_target(name).MODEL_FILE.split(".", 1)[1]):
            return name
    return None
