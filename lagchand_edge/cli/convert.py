"""`lagchand-edge convert`: the headline command."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer
from rich.table import Table

from converters import TARGETS
from lagchand_edge.cli.common import emit_json, module_names, progress_bar, renamed, stdout


def convert(
    target: str = typer.Option("all", help=f"{', '.join(TARGETS)} or all."),
    precision: str = typer.Option(None, help="fp32 (default), fp16 (tflite, coreml), int8 (all), w8 (coreml weight-only); int8 with --qat."),
    checkpoint: Path = typer.Option(None, help="Checkpoint; default: the bundled reference."),
    expect_config: str = typer.Option(None, help="Refuse the checkpoint unless its config is this one (tiny, lite, reference)."),
    config: str = typer.Option(None, hidden=True, help="Old name of --expect-config, kept for one release."),
    calib_data: Path = typer.Option(None, help="InterHand2.6M-format root, its cache, or a folder of photos (centre squares, or "
                                               "--calib-detect); default: synthetic."),
    calib_detect: bool = typer.Option(False, "--calib-detect", help="In a folder of photos, crop around the hands MediaPipe's palm "
                                      "detector finds (`anchors fetch` once; a photo without hands gives its centre square)."),
    calib_num: int = typer.Option(None, min=1, help="Calibration images (int8; default 32), chosen round-robin over captures."),
    calib_samples: int = typer.Option(None, min=1, hidden=True, help="Old name of --calib-num, kept for one release."),
    static: str = typer.Option(None, help="int8 plan: comma-separated modules quantized W8A8 ('none': no module). Default: the measured plan."),
    float_activations: str = typer.Option(None, help="int8 plan: modules with int8 weights over float activations."),
    keep_float: str = typer.Option(None, help="int8 plan: modules kept float (weights and activations)."),
    observer: str = typer.Option(None, help="int8 activation observer: histogram or minmax (default: minmax on tflite, histogram elsewhere)."),
    out: Path = typer.Option(Path("runs/artifacts"), help="Folder that receives <target>-<precision>/ artifacts."),
    force: bool = typer.Option(False, help="Replace existing artifacts."),
    qat: Path = typer.Option(None, help="Build int8 artifacts from this QAT checkpoint (`lagchand-edge qat`) for every target its student "
                                        "serves (executorch and tflite train the same graph; coreml its own); --target picks one."),
    input_form: str = typer.Option("nchw", "--input", help="What an app hands the model: nchw float tensor; nhwc (tflite: camera frames as "
                                                           "HWC); image (coreml: an ImageType, so an iOS app passes a CVPixelBuffer)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (nothing else on stdout)."),
) -> None:
    """Convert the FP32 model to edge artifacts (manifest + parity check against FP32)."""
    from calibration.plans import DEFAULT_INT8_PLAN, Int8Plan
    from lagchand_edge.convert import build_artifacts, qat_targets_for, targets_for

    precision = precision or ("int8" if qat else "fp32")
    config = renamed(expect_config, config, "--expect-config", "--config")
    calib_num = renamed(calib_num, calib_samples, "--calib-num", "--calib-samples") or 32
    planned = targets_for(target, precision) if qat is None else qat_targets_for(qat, target, input_form)[1]
    int8_plan = None
    if static is not None or float_activations is not None or keep_float is not None:
        int8_plan = Int8Plan(module_names(static, DEFAULT_INT8_PLAN.static), module_names(float_activations, DEFAULT_INT8_PLAN.float_activations),
                             module_names(keep_float, DEFAULT_INT8_PLAN.keep_float))
    calib_find = None
    if calib_detect:
        from apps.predict.detector import square_finder
        from lagchand_edge.profile.anchors import cached_detector

        calib_find = square_finder(cached_detector())
    with progress_bar(f"converting ({', '.join(planned)})", len(planned)) as advance:
        results = build_artifacts(target, precision, out, checkpoint, config, calib_data, calib_num, int8_plan, force, advance, observer, qat,
                                  input_form, calib_find)
    if as_json:
        emit_json([asdict(r) for r in results])
        return
    stdout.print(artifacts_table(results, "artifacts"))


def artifacts_table(results, title: str) -> Table:
    """One row per converted artifact: where, how big, how far from FP32; below, each int8 plan
    (the modules the options left out keep the default plan's schemes, which is easy to forget)."""
    from calibration.plans import Int8Plan

    plans = [f"int8 plan of {r.path.name}: {Int8Plan.from_dict(r.int8_plan).describe()}" for r in results if r.int8_plan]
    table = Table(title=title, caption="\n".join(plans) or None, caption_justify="left")
    for column in ("artifact", "size", "max vertex diff vs FP32", "parity check"):
        table.add_column(column)
    for r in results:
        diff = "-" if r.parity_max_vertex_mm is None else f"{r.parity_max_vertex_mm:.4f} mm"
        table.add_row(str(r.path), f"{r.size_bytes / 1e6:.2f} MB", diff, r.parity_note)
    return table
