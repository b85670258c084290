"""The `lagchand-edge` command. Commands are thin: parse, call one library function, render."""

from __future__ import annotations

import logging
import os
import signal
import sys
import warnings

import typer
from rich.markup import escape
from typer._click import exceptions as click_errors  # typer 0.29 runs its own copy of click: these are its errors
from typer.core import TyperOption

from lagchand_edge import __version__
from lagchand_edge.cli import data, model
from lagchand_edge.cli.common import console
from lagchand_edge.cli.convert import convert
from lagchand_edge.cli.drift import app as drift_app
from lagchand_edge.cli.predict import predict
from lagchand_edge.cli.profile import anchors_app, profile
from lagchand_edge.cli.qat import qat
from lagchand_edge.cli.quickstart import quickstart
from lagchand_edge.cli.serve import serve
from lagchand_edge.cli.third_party_log import VERBOSE_ENV, StderrDiversion
from lagchand_edge.errors import RankFailure, UserError, describe_internal_error

_display_type = TyperOption.display_type_rich


def _flags_show_no_type(self: TyperOption, ctx) -> str | None:
    """typer 0.29 labels every flag `<bool>` in --help; a flag takes no value, so it shows none."""
    return None if self.is_flag else _display_type(self, ctx)


TyperOption.display_type_rich = _flags_show_no_type

app = typer.Typer(
    name="lagchand-edge",
    help="Take the LAGCHand two-hand mesh network to CoreML, LiteRT and ExecuTorch.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data.app, name="data")
app.command()(quickstart)
app.command()(model.info)
app.command()(model.train)
app.command()(model.evaluate)
app.command()(qat)
app.command()(convert)
app.add_typer(drift_app, name="drift")
app.command()(predict)
app.command()(serve)
app.command()(profile)
app.add_typer(anchors_app, name="anchors")
_third_party_log = StderrDiversion([console])


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lagchand-edge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", help=f"Show the libraries' own log lines and warnings (or set {VERBOSE_ENV}=1)."),
) -> None:
    """lagchand-edge: model, data, conversion, drift and latency for LAGCHand on edge runtimes."""
    if verbose:
        _third_party_log.stop()


def main() -> None:
    """Entry point: user errors end as one line on stderr and exit code 2, never a traceback."""
    # Third-party chatter that says nothing to a user of this tool (DESIGN.md §5).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GLOG_minloglevel", "2")
    warnings.filterwarnings("ignore", message=r".*(Torch version|scikit-learn version|experimental_preserve_all_tensors|LeafSpec).*")
    for name in ("coremltools", "absl", "torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)
    signal.signal(signal.SIGTERM, _terminate)  # cleans up as Ctrl-C does: no half-written output
    _third_party_log.start()
    try:
        code = app(prog_name="lagchand-edge", standalone_mode=False)  # click's errors come here, to be said in one line like ours
    except click_errors.NoArgsIsHelpError as exc:
        help_text = exc.ctx.get_help() if exc.ctx else ""  # typer's rich help prints itself and returns ""
        if help_text:
            typer.echo(help_text)
        sys.exit(2)
    except click_errors.UsageError as exc:  # a bad option or value: the command's help, not a usage box
        command = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        console.print(f"[bold red]error:[/] {escape(exc.format_message())}{command}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except click_errors.ClickException as exc:
        console.print(f"[bold red]error:[/] {escape(exc.format_message())}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:  # end of input at a prompt
        sys.exit(130)
    except RankFailure as exc:  # one rank of a torchrun launch failed: rank 0 says which and why
        if exc.speak:
            console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.code)
    except UserError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as exc:
        if exc.filename is None:
            _internal_error(exc)
        console.print(f"[bold red]error:[/] {escape(str(exc.filename))}: {escape(exc.strerror or str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)  # a path the user gave that cannot be read or written
    except Exception as exc:
        _internal_error(exc)
    sys.exit(code if isinstance(code, int) else 0)


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _internal_error(exc: Exception) -> None:
    """A bug, not a user mistake: one line, and the full traceback in a file to attach to a report."""
    console.print(f"[bold red]{escape(describe_internal_error(exc))}", highlight=False, soft_wrap=True)
    sys.exit(1)
