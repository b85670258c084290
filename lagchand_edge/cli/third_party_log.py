"""Third-party chatter off the console: what native libraries (absl, oneDNN, LiteRT's "Created
TensorFlow Lite XNNPACK delegate") and Python warnings write to the process's stderr is dropped,
while this tool's own messages and progress bars keep the terminal.

Native libraries write to file descriptor 2 directly and ignore TF_CPP_MIN_LOG_LEVEL (the LiteRT
converter's absl logging among them), so only moving descriptor 2 silences them. `--verbose`
(or LAGCHAND_EDGE_VERBOSE=1) leaves everything on the console.
"""

from __future__ import annotations

import os
import sys
import warnings

from rich.console import Console

VERBOSE_ENV = "LAGCHAND_EDGE_VERBOSE"


class StderrDiversion:
    """Descriptor 2 (and so sys.stderr) to the null device; `consoles` keep the real stderr."""

    def __init__(self, consoles: list[Console]):
        self.consoles = consoles
        self.terminal = None
        self.filters = None

    def start(self) -> None:
        if os.environ.get(VERBOSE_ENV, "") not in ("", "0"):
            return
        sys.stderr.flush()
        self.terminal = os.fdopen(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding, errors="replace")
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        for console in self.consoles:
            console.file = self.terminal
        self.filters = warnings.filters[:]
        warnings.simplefilter("ignore")  # the libraries' deprecation notices say nothing to a user of this tool

    def stop(self) -> None:
        """Undo `start` (for --verbose, which is parsed after the diversion began)."""
        if self.terminal is None:
            return
        sys.stderr.flush()
        os.dup2(self.terminal.fileno(), 2)
        for console in self.consoles:
            console.file = sys.stderr
        warnings.filters[:] = self.filters
        self.terminal = None
