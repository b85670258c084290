"""`lagchand-edge drift`: is every artifact fit to ship? Gate exit codes for CI."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import typer
from rich.table import Table

from lagchand_edge.cli.common import emit_json, progress_bar, stdout
from lagchand_edge.errors import UserError

DEFAULT_SYNTH_SEED = 2024


def _synthetic_test_set(tmp: Path, num: int, shown: bool = True) -> Path:
    from lagchand_edge.data.synth import write_dataset

    with progress_bar("synthetic test set", num, shown) as advance:
        return write_dataset(tmp / "drift-data", num, seed=DEFAULT_SYNTH_SEED, split="test", progress=advance)


def _sensitivity(model, dataset, num: int) -> dict:
    import numpy as np

    from calibration import select_calibration
    from lagchand_edge.data.transforms import to_model_input
    from lagchand_edge.drift.sensitivity import SENSITIVITY_MODULES, layer_sensitivity

    samples = [dataset.load(i) for i in range(min(num, len(dataset)))]
    images = to_model_input(np.stack([s["image"] for s in samples]))
    gt = np.stack([s["joints_cam"] for s in samples]).astype(np.float64)
    calibration = select_calibration(dataset.root, min(16, len(dataset)), split=dataset.split).images
    with progress_bar("per-layer sensitivity", 1 + 2 * len(SENSITIVITY_MODULES)) as advance:
        return layer_sensitivity(model, calibration, images, gt, progress=advance)


def _with_rate(advance):
    """A progress callback that also shows samples/s."""
    started, done = time.perf_counter(), [0]

    def tick(n: int) -> None:
        done[0] += n
        advance(n, info=f"{done[0] / max(time.perf_counter() - started, 1e-9):.1f} samples/s")

    return tick


def _checked_by_all_ranks(ranks, model, checkpoint, dataset, paths, shard_range, batch_size, allow_mismatch, worst_k):
    """The drift run of this launch: one process's (or shard's), or under torchrun every rank's
    block merged on rank 0 (None on the other ranks)."""
    from lagchand_edge.distributed import reference_device, shard_indices
    from lagchand_edge.drift.harness import merge_runs, run_drift, shard_alignment

    align = shard_alignment(reference_device(), batch_size)
    if ranks.world > 1:
        shard_range = ranks.shard
        ranks.block(len(dataset), align)  # refuses a launch that leaves some rank nothing to do
    total = len(dataset) if ranks.world > 1 else len(shard_indices(len(dataset), shard_range, align))
    started = time.perf_counter()
    with progress_bar("drift", total, shown=ranks.leader) as advance:
        runs = ranks.gather(lambda tick: run_drift(model, checkpoint, dataset, paths, shard_range, batch_size, allow_mismatch, worst_k, tick),
                            _with_rate(advance))
    if runs is None:
        return None
    if len(runs) == 1:
        return runs[0]
    run = merge_runs(runs)
    run.machine |= {"ranks": ranks.world, "elapsed_seconds": time.perf_counter() - started}
    return run


def _render(report: dict, out: Path) -> None:
    from lagchand_edge.drift.report import summary_lines

    lines = summary_lines(report)
    table = Table(title=f"drift vs FP32 on {report['data']['samples']} samples (report: {out / 'report.html'})")
    for column in lines[0]:
        table.add_column(column)
    colours = {"PASS": "green", "FAIL": "red", "ERROR": "yellow", "SKIPPED": "dim"}
    for row in lines[1:]:
        verdict = row[-1].split()[0]
        table.add_row(*row[:-1], f"[{colours.get(verdict, 'white')}]{row[-1]}[/]")
    stdout.print(table)
    for r in report["artifacts"]:
        if r["verdict"] in ("ERROR", "SKIPPED"):
            stdout.print(f"{r['artifact']}: {r['verdict']}: {r['reason']}")
    ref = report["reference"]["accuracy"]
    stdout.print(f"FP32 reference: MPJPE {ref['mpjpe']:.2f} mm" + (f", MPVPE {ref['mpvpe']:.2f} mm" if "mpvpe" in ref else ""))
    timing = report["timing"]
    if timing["overhead_ratio"]:
        stdout.print(f"harness overhead: {timing['wall_seconds']:.1f} s wall / {timing['inference_seconds']:.1f} s pure inference "
                     f"= {timing['overhead_ratio']:.2f}x (goal <= 1.25x)")
    from lagchand_edge.drift.report import interpreter_speed, throughput_line

    stdout.print(throughput_line(report))
    if interpreter_speed(report):
        stdout.print(interpreter_speed(report))
    if report.get("sensitivity"):
        stdout.print("most int8-sensitive modules (mean joint drift vs FP32 when only this module is int8): "
                     + ", ".join(f"{r['module']} {r['only_this_int8_mm']:.2f} mm" for r in report["sensitivity"]["ranking"][:5]))
    stdout.print(f"[bold]{'PASS' if report['passed'] else 'FAIL'}[/]")


def drift(
    paths: list[Path] = typer.Argument(None, help="Artifact folders, or folders holding them; 'merge' then shard folders to merge."),
    data: Path = typer.Option(None, help="InterHand2.6M-format root or a `data cache` of one; default: a synthetic set made on the fly."),
    split: str = typer.Option("test"),
    num: int = typer.Option(200, min=1, help="Samples (synthetic set size, or the first N of --data)."),
    checkpoint: Path = typer.Option(None, help="FP32 reference checkpoint; default: the bundled one."),
    out: Path = typer.Option(Path("runs/drift"), help="Report folder (report.json / .md / .html, plots)."),
    max_mpjpe_drift: float = typer.Option(None, help="Gate on |ΔMPJPE| mm for every artifact (default by precision: fp32 0.01, fp16 0.1, int8 1.0)."),
    max_mpvpe_drift: float = typer.Option(None, help="Gate on |ΔMPVPE| mm (same defaults)."),
    max_vertex_drift: float = typer.Option(None, min=0, help="Also gate on the p95 vertex drift from FP32's outputs, mm (off by default)."),
    shard: str = typer.Option(None, help="Check only shard INDEX/COUNT of the data; merge shards with 'drift merge' (torchrun does both itself)."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first unreadable record, naming it (default: skip and count it)."),
    per_layer: bool = typer.Option(False, "--per-layer", help="Also rank modules by the int8 drift they cause (PT2E)."),
    allow_mismatch: bool = typer.Option(False, help="Accept artifacts converted from another checkpoint."),
    batch_size: int = typer.Option(8, min=1),
    worst_k: int = typer.Option(4, min=0, help="Worst samples drawn per artifact."),
    mano_dir: Path = typer.Option(None),
    force: bool = typer.Option(False, help="Replace an existing report in OUT."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Check artifacts against the FP32 reference on InterHand2.6M samples; exit 1 if any FAILs or cannot be read.

    `lagchand-edge drift merge SHARD_OUT... --out DIR` folds `--shard` runs into one report.
    Under `torchrun --nproc_per_node P -m lagchand_edge drift ...` each rank checks its block and
    rank 0 writes the report one process would have written.
    """
    from lagchand_edge.checkpoint import bundled_checkpoint, load_checkpoint
    from lagchand_edge.data.cache import open_dataset
    from lagchand_edge.distributed import process_group
    from lagchand_edge.drift.harness import load_run, merge_runs, parse_shard
    from lagchand_edge.drift.report import build_report, write_report
    from lagchand_edge.io import refuse_existing, report_files

    refuse_existing(out / "report.json", force)
    for option, value in (("--max-mpjpe-drift", max_mpjpe_drift), ("--max-mpvpe-drift", max_mpvpe_drift), ("--max-vertex-drift", max_vertex_drift)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UserError(f"{option} {value}: a gate is a finite number of millimetres, 0 or more")
    paths = list(paths or [])
    if paths and str(paths[0]) == "merge":
        if not paths[1:]:
            raise UserError("drift merge: give the shard output folders to merge")
        run = merge_runs([load_run(p) for p in paths[1:]])
        sensitivity = None
    else:
        if not paths and not per_layer:
            raise UserError("give artifact folders to check (or --per-layer for the sensitivity ranking alone)")
        shard_range = parse_shard(shard)
        for path in [*paths, *([data] if data is not None else [])]:  # before minutes of rendering, not after
            if not path.exists():
                raise UserError(f"{path}: not found")
        checkpoint = checkpoint or bundled_checkpoint()
        model = load_checkpoint(checkpoint)
        with process_group() as ranks, tempfile.TemporaryDirectory() as tmp:
            if ranks.world > 1 and shard:
                raise UserError("--shard under torchrun: the ranks are the shards; give one or the other")
            root = data if data is not None else _synthetic_test_set(Path(tmp), num, shown=ranks.leader)
            dataset = open_dataset(root, split, mano_dir, limit=num, strict=strict)
            run = _checked_by_all_ranks(ranks, model, checkpoint, dataset, paths, shard_range, batch_size, allow_mismatch, worst_k)
            if run is None:
                return  # a rank other than 0: rank 0 writes the report
            sensitivity = _sensitivity(model, dataset, min(num, 32)) if per_layer else None
        if data is None:
            run.data["root"] = f"synthetic (seed {DEFAULT_SYNTH_SEED}, {num} samples)"
    report = build_report(run, max_mpjpe_drift, max_mpvpe_drift, sensitivity, max_vertex_drift)
    with report_files(out, "report.json", force=force) as tmp_out:
        run.save(tmp_out)
        write_report(run, report, tmp_out)
    if as_json:
        emit_json({k: v for k, v in report.items() if k != "sample_ids"})
    else:
        _render(report, out)
    if not report["passed"]:
        raise typer.Exit(1)
