"""`lagchand-edge quickstart`: the main job on the embedded defaults, end to end."""

from __future__ import annotations

from pathlib import Path

import typer

from lagchand_edge.cli.common import progress_bar, stdout
from lagchand_edge.cli.convert import artifacts_table
from lagchand_edge.cli.data import _print_summary
from lagchand_edge.cli.drift import drift
from lagchand_edge.cli.profile import profile


def quickstart(
    out: Path = typer.Option(Path("runs/quickstart"), help="Working folder for everything it makes."),
    num: int = typer.Option(32, help="Synthetic test samples (also the int8 calibration set)."),
    precisions: str = typer.Option("fp32,int8", help="Comma-separated precisions to build for every target."),
    checkpoint: Path = typer.Option(None, help="Checkpoint to take through it; default: the bundled reference."),
    force: bool = typer.Option(False, help="Replace OUT if it exists."),
) -> None:
    """Synthesise a test set, convert the checkpoint (default: the bundled one) for every target and precision, then check
    every artifact's drift against FP32 and profile its latency (reports in OUT/report/)."""
    from lagchand_edge.convert import convert
    from lagchand_edge.data.synth import write_dataset

    data = out / "data"
    with progress_bar("synthetic test set", num) as advance:
        write_dataset(data, num, seed=0, split="test", progress=advance, force=force)
    _print_summary(data, "test", as_json=False)
    results = []
    for precision in [p for p in precisions.split(",") if p]:
        with progress_bar(f"converting {precision}", 3) as advance:
            results += convert("all", precision, out / "artifacts", checkpoint, calib_data=data, calib_samples=num, force=force, progress=advance)
    stdout.print(artifacts_table(results, f"artifacts from {checkpoint or 'the bundled checkpoint'}"))
    report = out / "report"
    try:  # on a fresh synthetic set (not the calibration one); FAIL verdicts are information here, not a stop
        drift(paths=[out / "artifacts"], data=None, split="test", num=num, checkpoint=checkpoint, out=report, max_mpjpe_drift=None,
              max_mpvpe_drift=None, max_vertex_drift=None, shard=None, per_layer=False, allow_mismatch=False, batch_size=8, worst_k=4, mano_dir=None,
              force=force, as_json=False)
    except typer.Exit:
        pass
    anchor = bool(_anchors_cached())
    profile(paths=[out / "artifacts"], threads=2, warmup=5, runs=20, anchor=anchor, merge=[], checkpoint=checkpoint, no_ops=False,
            out=report, force=force, as_json=False)
    if not anchor:
        stdout.print("(run `lagchand-edge anchors fetch` once to time MediaPipe's hand landmark models alongside)")
    stdout.print(f"[green]done[/]: {out} (open {report / 'report.html'} and {report / 'profile.html'})")


def _anchors_cached() -> bool:
    from lagchand_edge.errors import UserError
    from lagchand_edge.profile.anchors import cached_anchors

    try:
        return bool(cached_anchors())
    except UserError:
        return False
