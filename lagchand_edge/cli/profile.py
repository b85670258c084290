"""`lagchand-edge profile` and `lagchand-edge anchors fetch`: latency, honestly labelled."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from lagchand_edge.cli.common import emit_json, progress_bar, stdout

anchors_app = typer.Typer(help="MediaPipe hand-landmark models as latency anchors (opt-in download).", no_args_is_help=True)


@anchors_app.command("fetch")
def anchors_fetch() -> None:
    """Download mediapipe==0.10.14 from the package index, keep only its two hand-landmark .tflite files (sha256-checked)."""
    from lagchand_edge.profile.anchors import fetch

    for path in fetch():
        stdout.print(f"saved {path}")


def profile(
    paths: list[Path] = typer.Argument(None, help="Artifact folders (or folders holding them), or foreign .tflite / .pte files."),
    threads: int = typer.Option(2, help="Threads for every runtime (and the eager model)."),
    warmup: int = typer.Option(10, help="Warm-up runs before timing."),
    runs: int = typer.Option(50, help="Timed runs per series (two series; raised automatically if they disagree by > 10%)."),
    anchor: bool = typer.Option(False, "--anchor", help="Also time MediaPipe's hand_landmark_full/lite (run `anchors fetch` once)."),
    merge: list[Path] = typer.Option([], help="Records made on a device, folded into the report: device-runner JSON, "
                                      "benchmark_model or executor_runner logs, a CSV of Xcode Core ML performance reports, "
                                      "or a folder of one device's records (named after the device)."),
    checkpoint: Path = typer.Option(None, help="Checkpoint of the eager FP32 model timed alongside; default: the bundled one."),
    no_ops: bool = typer.Option(False, "--no-ops", help="Skip the op-level breakdown."),
    repeat: int = typer.Option(1, help="Time everything N times, every other time in the opposite order; the goals then give each "
                               "ratio's median and range (single runs on a shared machine swing past the goals' margins)."),
    out: Path = typer.Option(Path("runs/profile"), help="Report folder (profile.json / .md / .html); a drift report there adds accuracy vs latency."),
    force: bool = typer.Option(False, help="Replace an existing profile in OUT."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (nothing else on stdout)."),
) -> None:
    """Latency of each artifact in its real runtime (host proxy), with the eager FP32 model and optional anchors timed alongside."""
    from lagchand_edge.profile.session import Settings, count_models, profile_to

    paths = list(paths or [])
    with progress_bar("profiling", count_models(paths, anchor, max(repeat, 1))) as advance:
        session = profile_to(out, paths, Settings(threads, warmup, runs, not no_ops), checkpoint, anchor, merge, force, advance, repeat)
    show_profile(session, out, as_json)
    if any(r["status"] == "ERROR" for r in session["results"]):
        raise typer.Exit(1)  # like drift: every other row was timed and is in the report, but an artifact could not be


#: the latency table's columns that a terminal shows (all 16 cut every name to "tflite-…"); the report has them all
TERMINAL_COLUMNS = ("artifact", "runtime", "precision", "where", "load ms", "p50 ms", "p90 ms", "speed-up", "size MB", "GMAC/s", "status")


def show_profile(session: dict, out: Path, as_json: bool) -> None:
    """The profile in the terminal: the latency table, where the time goes, the goals (or JSON)."""
    from lagchand_edge.profile.report import goal_rows, op_summary, table_rows

    if as_json:
        emit_json({**session, "results": [{k: v for k, v in r.items() if k != "record"} | {"latency_ms": r.get("record", {}).get("latency_ms")}
                                          for r in session["results"]]})
        return
    rows = table_rows(session)
    title = f"latency, {session['settings']['threads']} threads, {session['machine']['cpu']} ({session['label']}; report: {out / 'profile.html'})"
    table = Table(title=title)
    shown = [i for i, column in enumerate(rows[0]) if column in TERMINAL_COLUMNS]
    for i in shown:
        table.add_column(rows[0][i], no_wrap=rows[0][i] == "artifact", overflow="fold")
    reasons: dict[str, int] = {}  # a reason is a sentence: in the cell it took a line per word, and repeated per row
    status_at = rows[0].index("status")
    for row in rows[1:]:
        status, _, reason = row[status_at].partition(": ")
        if reason:
            row[status_at] = f"{status} (note {reasons.setdefault(reason, len(reasons) + 1)})"
        table.add_row(*(row[i] for i in shown))
    stdout.print(table)
    for reason, number in reasons.items():
        stdout.print(f"note {number}: {reason}", highlight=False, markup=False)
    for line in (line for r in session["results"] if r["status"] == "OK" for line in op_summary(r)):
        stdout.print(line, highlight=False, markup=False)  # "[delegated (XNNPACK)]" is text, not a style tag
    for goal, measured, target, _ in goal_rows(session["goals"])[1:]:
        stdout.print(f"goal: {goal} = {measured} (goal {target})")
    for name, note in session["goals"]["stability"].items():
        stdout.print(f"stability of {name}: {note}")
