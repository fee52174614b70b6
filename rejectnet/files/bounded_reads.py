"""Bounded reads of regular files: the one way rejectnet reads a model file or a checkpoint.

A path given to :func:`rejectnet.load`, :func:`rejectnet.read_metadata` or a resume can
point anywhere: a symlink to ``/dev/zero`` would be read until memory runs out, a FIFO
would block forever, a folder or a 100 GB file would fail late. Every read here

* stats the path (following symlinks, so a symlink to a real file is fine) and refuses
  anything but a regular file *before opening it*;
* opens it with ``O_NONBLOCK`` (a FIFO swapped in between the stat and the open can never
  block the call) and checks the open descriptor again with ``fstat``;
* refuses a file larger than the caller's limit before reading a byte of it, and never
  reads past the size it found (a file that grows while being read is refused).

Refusals raise :class:`UnsafeFileError` (a ``ValueError``) naming the path and the reason.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from types import TracebackType

__all__ = ["BoundedFile", "UnsafeFileError", "describe_kind", "open_regular", "read_bounded"]

_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class UnsafeFileError(ValueError):
    """A path is not a regular file, or is larger than the limit for what it should be.

    Attributes:
        path: The path refused.
    """

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


def describe_kind(mode: int) -> str:
    """What a file that is not a regular file is, from its ``st_mode`` (for messages).

    Example:
        >>> import stat
        >>> describe_kind(stat.S_IFDIR)
        'a folder'
    """
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _size_text(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


class BoundedFile:
    """An open regular file that is read by exact byte counts, never past its size.

    Use :func:`open_regular` to make one; it is a context manager.

    Attributes:
        path: The path opened.
        size: The file's size in bytes when it was opened.
    """

    def __init__(self, fd: int, path: Path, size: int, what: str) -> None:
        self._fd = fd
        self.path = path
        self.size = size
        self._what = what
        self._pos = 0

    @property
    def remaining(self) -> int:
        """Bytes not read yet."""
        return self.size - self._pos

    def read_exact(self, n: int) -> bytes:
        """Read exactly ``n`` bytes.

        Raises:
            UnsafeFileError: If fewer than ``n`` bytes are left (the file is truncated)
                or the file shrank while being read.
        """
        if n < 0 or n > self.remaining:
            raise UnsafeFileError(
                f"{self._what} {str(self.path)!r} is truncated: {n} more bytes needed at "
                f"offset {self._pos}, the file has {self.size} bytes",
                self.path,
            )
        chunks: list[bytes] = []
        left = n
        while left:
            chunk = os.read(self._fd, min(left, 1 << 24))
            if not chunk:
                raise UnsafeFileError(
                    f"{self._what} {str(self.path)!r} shrank while being read", self.path
                )
            chunks.append(chunk)
            left -= len(chunk)
        self._pos += n
        return b"".join(chunks) if len(chunks) != 1 else chunks[0]

    def readinto_exact(self, buf: memoryview) -> None:
        """Fill ``buf`` (a writable byte view) with the next ``len(buf)`` bytes, copying once.

        Raises:
            UnsafeFileError: As :meth:`read_exact`.
        """
        n = len(buf)
        if n > self.remaining:
            raise UnsafeFileError(
                f"{self._what} {str(self.path)!r} is truncated: {n} more bytes needed at "
                f"offset {self._pos}, the file has {self.size} bytes",
                self.path,
            )
        readv = getattr(os, "readv", None)
        pos = 0
        while pos < n:
            chunk = buf[pos : min(n, pos + (1 << 30))]
            if readv is not None:
                got = readv(self._fd, [chunk])
            else:  # Windows: no readv
                data = os.read(self._fd, len(chunk))
                chunk[: len(data)] = data
                got = len(data)
            if got == 0:
                raise UnsafeFileError(
                    f"{self._what} {str(self.path)!r} shrank while being read", self.path
                )
            pos += got
        self._pos += n

    def read_rest(self) -> bytes:
        """Read everything up to the size the file had when opened, and check it ended there."""
        data = self.read_exact(self.remaining)
        if os.read(self._fd, 1):
            raise UnsafeFileError(
                f"{self._what} {str(self.path)!r} grew while being read; is another process "
                "writing it?",
                self.path,
            )
        return data

    def fileobj(self) -> io.BufferedReader:
        """A seekable binary file object on a duplicate of the descriptor (close it yourself).

        For readers that need ``seek`` (``zipfile``, ``gzip``): the file was checked to be
        regular and within the limit when opened; they read at most its size.
        """
        return os.fdopen(os.dup(self._fd), "rb")

    def close(self) -> None:
        """Close the file (also done on leaving the ``with`` block)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> BoundedFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_regular(path: Path, *, max_bytes: int, what: str) -> BoundedFile:
    """Open ``path`` for reading if it is a regular file of at most ``max_bytes`` bytes.

    Args:
        path: The file. A symlink is followed; its target must be a regular file.
        max_bytes: The largest acceptable size.
        what: What the file should be ("model file", "checkpoint"), for messages.

    Returns:
        A :class:`BoundedFile` (a context manager).

    Raises:
        FileNotFoundError: If nothing exists at ``path``.
        UnsafeFileError: If ``path`` is a folder, FIFO, device or socket, or is larger
            than ``max_bytes``.
        OSError: If the file cannot be opened (permissions, for instance).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFileError(
            f"{what} {str(path)!r} is {describe_kind(st.st_mode)}, not a regular file; "
            "refused without reading it",
            path,
        )
    fd = os.open(path, os.O_RDONLY | _O_NONBLOCK | _O_BINARY | _O_CLOEXEC)
    try:
        st = os.fstat(fd)  # the path may have been swapped between stat and open
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(
                f"{what} {str(path)!r} is {describe_kind(st.st_mode)}, not a regular file; refused "
                "without reading it",
                path,
            )
        if st.st_size > max_bytes:
            raise UnsafeFileError(
                f"{what} {str(path)!r} is {_size_text(st.st_size)} ({st.st_size} bytes), more "
                f"than the {_size_text(max_bytes)} limit for it; refused without reading it",
                path,
            )
    except BaseException:
        os.close(fd)
        raise
    return BoundedFile(fd, path, st.st_size, what)


def read_bounded(path: Path, *, max_bytes: int, what: str) -> bytes:
    """Read a whole regular file of at most ``max_bytes`` bytes.

    Args:
        path: The file (a symlink to a regular file is fine).
        max_bytes: The largest acceptable size.
        what: What the file should be, for messages.

    Returns:
        The file's bytes.

    Raises:
        FileNotFoundError: If nothing exists at ``path``.
        UnsafeFileError: If ``path`` is not a regular file, is larger than ``max_bytes``,
            or changes size while being read.
        OSError: If the file cannot be opened or read.
    """
    with open_regular(path, max_bytes=max_bytes, what=what) as f:
        return f.read_rest()
