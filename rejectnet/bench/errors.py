"""The one error type of the benchmark's configuration and data sources."""

from __future__ import annotations

__all__ = ["BenchError"]


class BenchError(ValueError):
    """A bad benchmark configuration or data source, explained in one line.

    The ``rejectnet bench`` command prints the message (no traceback) and exits with
    status 2. It is a ``ValueError``, so ``except ValueError`` catches it too.

    Example:
        >>> str(BenchError("[data] id: path 'x.npz' does not exist"))
        "[data] id: path 'x.npz' does not exist"
    """
