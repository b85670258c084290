"""`lagchand-edge quickstart`: the main job on the embedded defaults, end to end."""

from __future__ import annotations

from pathlib import Path

import typer

from lagchand_edge.cli.common import progress_bar, stdout
from lagchand_edge.cli.convert import artifacts_table
from lagchand_edge.cli.data import _print_summary


def quickstart(
    out: Path = typer.Option(Path("runs/quickstart"), help="Working folder for everything it makes."),
    num: int = typer.Option(32, help="Synthetic test samples (also the int8 calibration set)."),
    precisions: str = typer.Option("fp32,int8", help="Comma-separated precisions to build for every target."),
    force: bool = typer.Option(False, help="Replace OUT if it exists."),
) -> None:
    """Synthesise a test set, then convert the bundled checkpoint for every target and precision."""
    from lagchand_edge.convert import convert
    from lagchand_edge.data.synth import write_dataset

    data = out / "data"
    with progress_bar("synthetic test set", num) as advance:
        write_dataset(data, num, seed=0, split="test", progress=advance, force=force)
    _print_summary(data, "test", as_json=False)
    results = []
    for precision in [p for p in precisions.split(",") if p]:
        with progress_bar(f"converting {precision}", 3) as advance:
            results += convert("all", precision, out / "artifacts", calib_data=data, calib_samples=num, force=force, progress=advance)
    stdout.print(artifacts_table(results, "artifacts from the bundled checkpoint"))
    stdout.print(f"[green]done[/]: {out}")
