"""Bounded reads (rejectnet.files.bounded_reads): regular files only, within a size bound."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rejectnet.files.bounded_reads import (
    UnsafeFileError,
    describe_kind,
    open_regular,
    read_bounded,
)


def test_a_regular_file_within_the_bound_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"0123456789")
    assert read_bounded(path, max_bytes=10, what="test file") == b"0123456789"
    with open_regular(path, max_bytes=10, what="test file") as f:
        assert f.read_exact(4) == b"0123"
        assert f.remaining == 6
        with pytest.raises(UnsafeFileError, match="truncated"):
            f.read_exact(7)


def test_a_file_over_the_bound_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 11)
    with pytest.raises(UnsafeFileError, match="test file") as err:
        read_bounded(path, max_bytes=10, what="test file")
    assert err.value.path == path


def test_a_folder_and_a_fifo_are_refused_without_blocking(tmp_path: Path) -> None:
    with pytest.raises(UnsafeFileError, match="a folder"):
        read_bounded(tmp_path, max_bytes=10, what="test file")
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UnsafeFileError, match="FIFO"):
        read_bounded(fifo, max_bytes=10, what="test file")


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_bounded(tmp_path / "missing", max_bytes=10, what="test file")


def test_describe_kind_names_what_is_not_a_regular_file() -> None:
    assert describe_kind(stat.S_IFDIR) == "a folder"
    assert describe_kind(stat.S_IFIFO) == "a FIFO (named pipe)"
    assert describe_kind(stat.S_IFSOCK) == "a socket"
