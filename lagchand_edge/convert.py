"""Convert the FP32 reference to edge artifacts: calibration, per-target conversion, manifest,
atomic write, and a parity check against FP32 right after conversion."""

from __future__ import annotations

import copy
import json
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from calibration.mixed_precision import check_module_names
from calibration.plans import Int8Plan
from calibration.select import CalibrationSet, HandFinder, is_image_folder, select_calibration
from converters import TARGETS, RuntimeMissing, check_convertible, convertible, get_target
from converters.recipe import ConversionError, Recipe
from lagchand_edge.artifact import INPUT_FORMS, MANIFEST, build_manifest, embedded_metadata, load_runner
from lagchand_edge.checkpoint import bundled_checkpoint, load_checkpoint
from lagchand_edge.errors import UserError
from lagchand_edge.io import atomic_dir, file_sha256
from lagchand_edge.model import OUTPUT_NAMES, DeployModel, LAGCHand
from lagchand_edge.model_card import MODEL_CARD, artifact_card

PARITY_IMAGES = 4
HAND_FACES = "hand_faces.npy"


@dataclass
class ConvertResult:
    target: str
    precision: str
    path: Path
    size_bytes: int
    parity_max_vertex_mm: float | None
    parity_note: str
    int8_plan: dict | None = None  # as the manifest records it


def synthetic_calibration(count: int) -> CalibrationSet:
    """A calibration set rendered on the fly (when the user gives no --calib-data)."""
    from lagchand_edge.data.synth import describe_synthetic, synthetic_set

    with tempfile.TemporaryDirectory() as tmp:
        root = synthetic_set(Path(tmp) / "calib", count, "calibration", workers=1)
        chosen = select_calibration(root, count)
    chosen.source = describe_synthetic(count, "calibration")
    return chosen


def targets_for(target: str, precision: str) -> list[str]:
    """Targets to build: one, or every target that offers the precision for 'all'."""
    if target == "all":
        chosen = [name for name in TARGETS if precision in get_target(name).PRECISIONS]
        if not chosen:
            raise UserError(f"no target offers precision {precision!r}")
        return chosen
    module = get_target(target)
    if precision not in module.PRECISIONS:
        raise UserError(f"target {target} has no precision {precision!r}; choose one of {', '.join(module.PRECISIONS)}")
    return [target]


def parity(artifact_dir: Path, model: LAGCHand, images: torch.Tensor) -> tuple[float | None, str]:
    """Max vertex difference (mm, normalised units) between the artifact and FP32 on a few images.
    Skipped only when this machine lacks the target's runtime: an artifact that will not open in
    an installed runtime is a failed conversion, raised."""
    try:
        runner = load_runner(artifact_dir)
    except RuntimeMissing as exc:
        return None, f"skipped: {exc.reason}"
    with torch.no_grad():
        reference = DeployModel(model, deployed_form=False)(images)[0].numpy()
    got = runner(images.numpy()).vertices
    return float(np.abs(got - reference).max() * 1000), f"{len(images)} images"


def _qat_calibrates(target: str) -> bool:
    """Whether `convert --qat` calibrates `target`'s activations itself: it trained another target's
    graph (`QAT_STUDENT`) and takes only its weights. Otherwise the QAT graph carries its own scales
    and calibration images serve the parity check alone."""
    return get_target(target).QAT_STUDENT is not None


def convert_artifact(model: LAGCHand, target: str, precision: str, out: Path, calibration: CalibrationSet | None,
                     plan: Int8Plan, source: dict, force: bool, observer: str | None = None,
                     qat: tuple[torch.fx.GraphModule, dict] | None = None, input_form: str = "nchw") -> ConvertResult:
    """One artifact, written atomically. `qat` (the trained graph and its record) replaces calibration,
    the images then only serving the parity check, unless the target trained another's graph
    (`QAT_STUDENT`): LiteRT takes the trained weights and calibrates its activations on them.
    `input_form`: what the app hands the model (`INPUT_FORMS`); calibration and parity images stay
    NCHW, the runners adapt."""
    module = get_target(target)
    deploy = DeployModel(model, int8_embeddings=precision == "int8", channels_last_input=input_form == "nhwc").eval()
    image = torch.rand(1, 3, model.cfg.image_size, model.cfg.image_size, generator=torch.Generator().manual_seed(0))
    example = image.permute(0, 2, 3, 1).contiguous() if input_form == "nhwc" else image
    plan = plan if precision == "int8" else Int8Plan()
    try:
        check_module_names(deploy, plan)
    except ConversionError as exc:
        raise UserError(f"int8 plan: {exc}") from None
    with torch.no_grad():
        shapes = dict(zip(OUTPUT_NAMES, (tuple(o.shape) for o in deploy(example)), strict=True)) | {"image": tuple(example.shape)}
    recipe = Recipe(precision, calibration.images if calibration is not None else None, plan, observer, qat[0] if qat else None,
                    embedded_metadata(precision, source, shapes, input_form), input_form)
    with atomic_dir(out, force=force) as tmp:
        try:
            extra = module.write_model(deploy, example, recipe, tmp)
        except ConversionError as exc:
            raise UserError(f"{target} {precision}: {exc}") from None
        except Exception as exc:  # a converter's own failure: name it and the op if it says one
            last = traceback.extract_tb(exc.__traceback__)[-1]
            raise UserError(f"{target} {precision} conversion failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]} "
                            f"(in {Path(last.filename).name}:{last.lineno})") from None
        # the mesh's faces (left, right) beside the model, so an app can draw wireframes without this toolkit's hand models
        np.save(tmp / HAND_FACES, model.faces.numpy().astype(np.int32))
        manifest = build_manifest(target, precision, tmp / module.MODEL_FILE, extra, source,
                                  calibration.manifest() if calibration is not None and recipe.quantized
                                  and (not qat or _qat_calibrates(target)) else None,
                                  plan if recipe.precision == "int8" else None, shapes, input_form)
        if qat:
            manifest["qat"] = qat[1]
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        images = calibration.images[:PARITY_IMAGES] if calibration is not None else image
        try:
            diff, note = parity(tmp, model, images)
        except Exception as exc:  # it converted but fails in its own runtime: keep nothing of it
            raise UserError(f"{target} {precision}: the converted artifact fails in its runtime: {type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:300]}") from None
        (tmp / MODEL_CARD).write_text(artifact_card(manifest, diff, note))
    return ConvertResult(target, precision, out, manifest["size_bytes"], diff, note, manifest["recipe"]["int8_plan"])


def build_artifacts(target: str, precision: str, out_dir: Path, checkpoint: Path | None = None, config: str | None = None,
                    calib_data: Path | None = None, calib_num: int = 32, int8_plan: Int8Plan | None = None, force: bool = False,
                    progress=None, observer: str | None = None, qat: Path | None = None, input_form: str = "nchw",
                    calib_find: HandFinder | None = None) -> list[ConvertResult]:
    """Build the planned artifacts under `out_dir/<target>-<precision>/` (int8 by `int8_plan`,
    default each target's measured plan; or from a QAT checkpoint, for the targets it serves).
    `calib_find` places the calibration crops in a folder of photos (see calibration.select)."""
    if calib_find is not None and not (calib_data is not None and is_image_folder(Path(calib_data))):
        raise UserError("--calib-detect finds the hands in a folder of photos (--calib-data FOLDER); InterHand2.6M roots and caches "
                        "carry their own crops")
    if qat is not None:
        return _convert_qat(Path(qat), target, precision, out_dir, checkpoint, config, calib_data, calib_num, int8_plan, force,
                            progress, observer, input_form, calib_find)
    targets = targets_for(target, precision)
    check_convertible(targets)
    _check_input(input_form, targets)
    if int8_plan is not None and precision != "int8":
        raise UserError("--static / --float-activations / --keep-float only apply to --precision int8")
    if observer is not None:
        _check_observer(observer, precision, targets)
    checkpoint_path = Path(checkpoint) if checkpoint else bundled_checkpoint()
    model = load_checkpoint(checkpoint_path, config)
    calibration = None
    if precision == "int8" or calib_data is not None:
        calibration = _calibration(calib_data, calib_num, calib_find)
    source = _source(checkpoint_path, model)
    results = []
    for name in targets:
        results.append(convert_artifact(model, name, precision, Path(out_dir) / f"{name}-{precision}", calibration,
                                        int8_plan or get_target(name).INT8_PLAN, source, force, observer, input_form=input_form))
        if progress:
            progress(1)
    return results


def _check_input(form: str, targets: list[str]) -> None:
    """--input must be a known form that every planned target offers."""
    if form not in INPUT_FORMS:
        raise UserError(f"--input takes {', '.join(INPUT_FORMS)}, not {form!r}")
    lacking = [name for name in targets if form not in get_target(name).INPUTS]
    if lacking:
        offering = [name for name in TARGETS if form in get_target(name).INPUTS]
        raise UserError(f"--input {form} is offered by --target {' or '.join(offering)}, not by {', '.join(lacking)}")


def _check_observer(observer: str, precision: str, targets: list[str]) -> None:
    """--observer needs int8 and targets that let one choose, and a name every one of them offers."""
    choosing = [name for name in TARGETS if get_target(name).OBSERVERS]
    if precision != "int8" or any(name not in choosing for name in targets):
        raise UserError(f"--observer applies to --precision int8 on --target {' or '.join(choosing)} (the others calibrate with their own observers)")
    offered = [o for name in targets for o in get_target(name).OBSERVERS]
    if observer not in offered:
        raise UserError(f"--observer takes {' or '.join(dict.fromkeys(offered))}, not {observer!r}")


def _source(checkpoint: Path, model: LAGCHand) -> dict:
    return {"checkpoint": str(checkpoint), "checkpoint_sha256": file_sha256(checkpoint), "config": model.cfg.name,
            "hand_model": model.hand_model_name}


def _calibration(calib_data: Path | None, count: int, find: HandFinder | None = None) -> CalibrationSet:
    return select_calibration(calib_data, count, find=find) if calib_data else synthetic_calibration(count)


def qat_targets_for(path: Path, target: str, input_form: str = "nchw") -> tuple[dict, list[str]]:
    """A QAT checkpoint's sidecar and the targets `convert --qat` builds from it: `target`, or for
    'all' each target that trains the same student (`converts_to`), this machine converts and
    takes `input_form` (the one it trained for always among them, so a missing extra is named)."""
    from calibration.qat import converts_to, read_qat_info

    info = read_qat_info(path)  # the sidecar alone: refuse a wrong target before rebuilding the graph
    served = converts_to(info["target"])
    if target == "all":
        targets = [name for name in served
                   if name == info["target"] or (name in convertible() and input_form in get_target(name).INPUTS)]
    elif target in served:
        targets = [target]
    else:
        raise UserError(f"{path} was trained for {info['target']}; its student converts for --target {' or '.join(served)}")
    check_convertible(targets)
    _check_input(input_form, targets)
    return info, targets


def _convert_qat(path: Path, target: str, precision: str | None, out_dir: Path, checkpoint, config, calib_data, calib_num,
                 int8_plan, force: bool, progress, observer, input_form: str, calib_find: HandFinder | None) -> list[ConvertResult]:
    """The int8 artifacts of a QAT checkpoint (`qat_targets_for`) at its plan, from its source FP32
    model (which the parity check and the manifest's source then name, so drift compares with the
    original). Each target converts its own copy of the trained graph."""
    from calibration.qat import load_qat

    if checkpoint is not None or config is not None or int8_plan is not None or observer is not None:
        raise UserError("--qat brings its own source checkpoint and int8 plan: drop --checkpoint, --config, --static, "
                        "--float-activations, --keep-float and --observer")
    if precision != "int8":
        raise UserError(f"--qat builds int8 artifacts, not {precision}")
    info, targets = qat_targets_for(path, target, input_form)
    graph, model, info = load_qat(path, info)
    source = _source(Path(info["source"]["checkpoint"]), model)
    results = []
    for name in targets:
        record = {"checkpoint": str(path), "checkpoint_sha256": info["sha256"], "trained_for": info["target"],
                  "scheme": get_target(name).qat_scheme(), "epochs": info["epoch"], "data": info["data"], "samples": info["samples"]}
        calibration_num = calib_num if _qat_calibrates(name) else min(calib_num, PARITY_IMAGES)
        results.append(convert_artifact(model, name, "int8", Path(out_dir) / f"{name}-int8", _calibration(calib_data, calibration_num, calib_find),
                                        Int8Plan.from_dict(info["plan"]), source, force, qat=(copy.deepcopy(graph), record),
                                        input_form=input_form))
        if progress:
            progress(1)
    return results
