"""The one error type a user can cause (the CLI prints its message in one line and exits 2),
and how a failure on one rank of a torchrun launch reaches the others."""

from __future__ import annotations

import os
import tempfile
import traceback


class UserError(Exception):
    """Bad input from the user (a path, a file, an option); never a bug in lagchand-edge."""


class RankFailure(Exception):
    """Some rank of a torchrun launch failed: rank 0 says so in one line, every rank exits `code`."""

    def __init__(self, message: str, code: int, speak: bool) -> None:
        super().__init__(message)
        self.code, self.speak = code, speak


def describe_internal_error(exc: BaseException) -> str:
    """One line for a bug, with the full traceback saved to a file to attach to a report."""
    handle, path = tempfile.mkstemp(prefix="lagchand-edge-error-", suffix=".txt")
    with os.fdopen(handle, "w") as out:
        out.write("".join(traceback.format_exception(exc)))
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"internal error: {type(exc).__name__}: {first} (full traceback: {path})"
