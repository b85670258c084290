"""`lagchand-edge drift check` (the default: `drift ART...`) and `drift merge`: is every artifact
fit to ship? Gate exit codes for CI. The work is `lagchand_edge.drift.check`'s."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.table import Table
from typer.core import TyperGroup

from lagchand_edge.cli.common import emit_json, progress_bar, stdout


class _CheckByDefault(TyperGroup):
    """`drift ART...` means `drift check ART...`: the first word is a subcommand only when it names one
    (an artifact folder called `merge` or `check` is written `./merge`)."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["check", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_CheckByDefault, no_args_is_help=True,
                  help="Accuracy drift of artifacts against the FP32 reference: `drift ART...` (= `drift check`), `drift merge`.")


@contextmanager
def stage_bar(description: str, total: int | None, shown: bool = True) -> Iterator:
    """A progress bar that also shows its rate per second (the library's `stages`: samples, models, targets)."""
    with progress_bar(description, total, shown) as advance:
        started, done = time.perf_counter(), [0]

        def tick(n: int = 1, **fields) -> None:
            done[0] += n
            advance(n, info=f"{done[0] / max(time.perf_counter() - started, 1e-9):.1f}/s")

        yield tick


def show_report(report: dict | None, out: Path, as_json: bool) -> None:
    """The report in the terminal (or as JSON); exit 1 when an artifact FAILed or could not be read."""
    if report is None:
        return  # a torchrun rank other than 0
    if as_json:
        emit_json({k: v for k, v in report.items() if k != "sample_ids"})
    else:
        _render(report, out)
    if not report["passed"]:
        raise typer.Exit(1)


def _render(report: dict, out: Path) -> None:
    from lagchand_edge.data.records import describe_skipped
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
    if report["data"].get("skipped"):  # records the lenient reader left out, said as every command says them
        stdout.print(f"data: {report['data']['samples']} samples, {describe_skipped(report['data']['skipped'])}", soft_wrap=True)
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


GATE_HELP = "(default by precision: fp32 0.01, fp16 0.1, int8 1.0)"


@app.command("check")
def drift_check(
    paths: list[Path] = typer.Argument(None, help="Artifact folders, or folders holding them."),
    data: Path = typer.Option(None, help="InterHand2.6M-format root or a `data cache` of one; default: a synthetic set made on the fly."),
    split: str = typer.Option("test", help="train, val or test."),
    num: int = typer.Option(200, min=1, help="Samples (synthetic set size, or the first N of --data)."),
    checkpoint: Path = typer.Option(None, help="FP32 reference checkpoint; default: the bundled one."),
    out: Path = typer.Option(Path("runs/drift"), help="Report folder (report.json / .md / .html, plots)."),
    max_mpjpe_drift: float = typer.Option(None, help=f"Gate on |ΔMPJPE| mm for every artifact {GATE_HELP}."),
    max_mpvpe_drift: float = typer.Option(None, help=f"Gate on |ΔMPVPE| mm {GATE_HELP}."),
    max_vertex_drift: float = typer.Option(None, help="Also gate on the p95 vertex drift from FP32's outputs, mm (off by default)."),
    shard: str = typer.Option(None, help="Check only shard INDEX/COUNT of the data; fold shards with 'drift merge' (torchrun does both itself)."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first unreadable record, naming it (default: skip and count it)."),
    per_layer: bool = typer.Option(False, "--per-layer", help="Also rank modules by the int8 drift they cause (PT2E)."),
    allow_mismatch: bool = typer.Option(False, "--allow-mismatch", help="Accept artifacts converted from another checkpoint."),
    batch_size: int = typer.Option(8, min=1, help="Images per batch (decoding; the reference on a GPU)."),
    worst_k: int = typer.Option(4, min=0, help="Worst samples drawn per artifact."),
    mano_dir: Path = typer.Option(None, help="MANO_RIGHT/LEFT.pkl folder, for the real release's meshes."),
    force: bool = typer.Option(False, "--force", help="Replace an existing report in OUT."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check artifacts against the FP32 reference on InterHand2.6M samples; exit 1 if any FAILs or cannot be read.

    Under `torchrun --nproc_per_node P -m lagchand_edge drift ...` each rank checks its block and
    rank 0 writes the report one process would have written.
    """
    from lagchand_edge.drift.check import DriftRequest, Gates, check_drift

    request = DriftRequest(list(paths or []), data, split, num, checkpoint, Gates(max_mpjpe_drift, max_mpvpe_drift, max_vertex_drift),
                           shard, strict, per_layer, allow_mismatch, batch_size, worst_k, mano_dir)
    show_report(check_drift(request, out, force, stage_bar), out, as_json)


@app.command("merge")
def drift_merge(
    folders: list[Path] = typer.Argument(..., help="Output folders of `drift check --shard i/n` runs, every shard once."),
    out: Path = typer.Option(Path("runs/drift"), help="Report folder for the merged report."),
    max_mpjpe_drift: float = typer.Option(None, help=f"Gate on |ΔMPJPE| mm {GATE_HELP}."),
    max_mpvpe_drift: float = typer.Option(None, help=f"Gate on |ΔMPVPE| mm {GATE_HELP}."),
    max_vertex_drift: float = typer.Option(None, help="Also gate on the p95 vertex drift from FP32's outputs, mm."),
    force: bool = typer.Option(False, "--force", help="Replace an existing report in OUT."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Fold shard outputs into the report one process would have written (exactly: integer tallies)."""
    from lagchand_edge.drift.check import Gates, merge_drift

    show_report(merge_drift(list(folders), out, Gates(max_mpjpe_drift, max_mpvpe_drift, max_vertex_drift), force), out, as_json)
