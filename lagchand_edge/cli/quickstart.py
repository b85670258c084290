"""`lagchand-edge quickstart`: the main job on the embedded defaults, end to end."""

from __future__ import annotations

from pathlib import Path

import typer

from lagchand_edge.cli.common import progress_bar, stdout
from lagchand_edge.cli.data import _print_summary


def quickstart(
    out: Path = typer.Option(Path("runs/quickstart"), help="Working folder for everything it makes."),
    num: int = typer.Option(32, help="Synthetic test samples."),
    force: bool = typer.Option(False, help="Replace OUT if it exists."),
) -> None:
    """Generate a synthetic InterHand2.6M-format test set and summarise it."""
    from lagchand_edge.data.synth import write_dataset

    data = out / "data"
    with progress_bar("synthetic test set", num) as advance:
        write_dataset(data, num, seed=0, split="test", progress=advance, force=force)
    _print_summary(data, "test", as_json=False)
    stdout.print(f"[green]done[/]: {out}")
