"""The test suite (a package, so that `tests.*` imports find these files before any other `tests` on the path)."""
