"""Private shim: the old path of :mod:`rejectnet.files.bounded_reads` and
:mod:`rejectnet.files.atomic_writes`, until every importer is switched (then deleted)."""

from __future__ import annotations

from rejectnet.files.atomic_writes import check_output_path, write_atomic, write_atomically
from rejectnet.files.bounded_reads import BoundedFile, UnsafeFileError, open_regular, read_bounded

__all__ = [
    "BoundedFile",
    "UnsafeFileError",
    "check_output_path",
    "open_regular",
    "read_bounded",
    "write_atomic",
    "write_atomically",
]
