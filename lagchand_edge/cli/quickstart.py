"""`lagchand-edge quickstart`: the main job on the embedded defaults, end to end (`lagchand_edge.quickstart`)."""

from __future__ import annotations

from pathlib import Path

import typer

from lagchand_edge.cli.common import renamed, stdout
from lagchand_edge.cli.convert import artifacts_table
from lagchand_edge.cli.data import print_data_summary
from lagchand_edge.cli.drift import show_report, stage_bar
from lagchand_edge.cli.profile import show_profile


def quickstart(
    out: Path = typer.Option(Path("runs/quickstart"), help="Working folder for everything it makes."),
    num: int = typer.Option(32, min=1, help="Synthetic samples: the int8 calibration set, and as many fresh ones for the drift check."),
    precision: str = typer.Option(None, help="Comma-separated precisions to build for every target that offers them (default fp32,int8)."),
    precisions: str = typer.Option(None, hidden=True, help="Old name of --precision, kept for one release."),
    checkpoint: Path = typer.Option(None, help="Checkpoint to take through it; default: the bundled reference."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
) -> None:
    """Synthesise a calibration set, convert the checkpoint (default: the bundled one) for every target and precision, then
    check every artifact's drift against FP32 on fresh samples and profile its latency (reports in OUT/report/)."""
    from lagchand_edge.quickstart import run_quickstart

    precision = renamed(precision, precisions, "--precision", "--precisions") or "fp32,int8"
    done = run_quickstart(out, num, tuple(p for p in precision.split(",") if p), checkpoint, force, stage_bar)
    print_data_summary(done.data, "test", as_json=False)
    stdout.print(artifacts_table(done.artifacts, f"artifacts from {checkpoint or 'the bundled checkpoint'}"))
    try:
        show_report(done.drift, out / "report", as_json=False)
    except typer.Exit:
        pass  # FAIL verdicts are information here, not a stop
    show_profile(done.profile, out / "report", as_json=False)
    for line in done.left_out:
        stdout.print(f"[yellow]left out[/] (packages not installed): {line}", highlight=False)
    if not done.anchors_timed:
        stdout.print("(run `lagchand-edge anchors fetch` once to time MediaPipe's hand landmark models alongside)")
    stdout.print(f"[green]done[/]: {out} (open {out / 'report' / 'report.html'} and {out / 'report' / 'profile.html'})")
