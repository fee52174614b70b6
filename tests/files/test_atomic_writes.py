"""The one atomic writer (rejectnet.files.atomic_writes): all or nothing, never via a link."""

from __future__ import annotations

from pathlib import Path

import pytest

from rejectnet.files.atomic_writes import check_output_path, write_atomic, write_atomically
from rejectnet.files.bounded_reads import UnsafeFileError


def test_write_atomic_writes_text_and_bytes(tmp_path: Path) -> None:
    assert write_atomic(tmp_path / "a.md", "# héllo").read_text(encoding="utf-8") == "# héllo"
    assert write_atomic(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    dest = tmp_path / "model.bin"
    dest.write_bytes(b"old")

    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(dest, fail)
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]


def test_a_symlink_or_folder_destination_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "target.txt"
    target.write_text("keep")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    with pytest.raises(UnsafeFileError, match="symlink"):
        write_atomic(link, "new")
    assert target.read_text() == "keep"
    with pytest.raises(UnsafeFileError, match="a folder"):
        check_output_path(tmp_path, what="report")
    check_output_path(tmp_path / "new.txt")  # a path that does not exist yet is fine
