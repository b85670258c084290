"""Shared CLI pieces: consoles, progress bars, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)
stdout = Console(width=None if sys.stdout.isatty() else 160)  # logs and pipes get wide tables, not 80-column wraps


@contextmanager
def progress_bar(description: str, total: int | None, shown: bool = True) -> Iterator[Any]:
    """A rich progress bar on stderr; yields `advance(n=1, **fields)`. `shown=False` (torchrun's
    ranks other than 0) draws nothing."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False, disable=not shown or (not console.is_terminal and total is None)) as progress:
        task = progress.add_task(description, total=total, info="")

        def advance(n: int = 1, info: str | None = None) -> None:
            progress.update(task, advance=n, **({"info": info} if info is not None else {}))

        try:
            yield advance
        except BaseException:
            progress.update(task, visible=False)  # an error says itself in one line, without a half-done bar above it
            raise


def emit_json(payload: Any) -> None:
    """Print machine-readable output on stdout (nothing else goes there with --json)."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def module_names(option: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated module list; None keeps the default plan's, 'none' means no module."""
    if option is None:
        return default
    return () if option.strip().lower() == "none" else tuple(n.strip() for n in option.split(",") if n.strip())


def renamed(value, old_value, name: str, old_name: str):
    """An option under its new name, or under its old one (a hidden alias kept for one release);
    both at once must agree."""
    from lagchand_edge.errors import UserError

    if value is not None and old_value is not None and value != old_value:
        raise UserError(f"{old_name} is the old name of {name}; give one of them")
    return value if value is not None else old_value
