"""The one atomic writer: every output file rejectnet writes.

Every output file rejectnet writes goes through :func:`write_atomic`: the bytes go to a
fresh temporary file in the same folder (created with ``O_EXCL``, so never through a
planted link), which is flushed and then renamed over the destination with
``os.replace``. A reader sees the old file or the new one, never half of one; a crash
leaves at most a stray ``.*.tmp`` file; and the destination is never followed: a
symlink or a folder at the destination is refused (:func:`check_output_path`), and even
one planted between the check and the rename is replaced, not written through.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from rejectnet.files.bounded_reads import UnsafeFileError, describe_kind

__all__ = ["check_output_path", "write_atomic", "write_atomically"]


def write_atomically(dest: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``dest``, then rename it to ``dest``.

    The one atomic writer (``rejectnet.save``, ``export_onnx``, ``export_aoti``): a crash or
    an error midway leaves ``dest`` as it was (``os.replace`` is atomic within a folder), and the
    temporary file is removed on any error. A folder at ``dest`` is refused before
    ``write`` runs (``IsADirectoryError``).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> out = Path(tempfile.mkdtemp()) / "a.txt"
        >>> write_atomically(out, lambda tmp: tmp.write_text("hi")).read_text()
        'hi'
    """
    if dest.is_dir() and not dest.is_symlink():  # refused before the (long) write, not after
        raise IsADirectoryError(f"path {str(dest)!r} is a folder; give a file name inside it")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return dest


def check_output_path(path: Path, *, what: str = "output") -> None:
    """Refuse an output destination that is a symlink, a folder or anything but a file.

    Args:
        path: Where an output will be written (it may not exist yet).
        what: What the output is, for messages.

    Raises:
        UnsafeFileError: If ``path`` exists and is a symlink (even to a regular file: it
            would not be followed), a folder, a FIFO, device or socket.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeFileError(
            f"{what} {str(path)!r} is a symlink; outputs are never written through links "
            "(remove it, or choose another output folder)",
            path,
        )
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFileError(
            f"{what} {str(path)!r} exists and is {describe_kind(st.st_mode)}; remove it, or choose "
            "another output folder",
            path,
        )


def write_atomic(path: str | os.PathLike[str], data: bytes | str, *, what: str = "output") -> Path:
    """Write ``data`` to ``path`` atomically, never following a symlink at ``path``.

    Args:
        path: The destination file.
        data: Bytes, or text (written as UTF-8).
        what: What the output is, for messages.

    Returns:
        The path written.

    Raises:
        UnsafeFileError: If ``path`` is a symlink, a folder or another non-file.
        OSError: If the folder is missing or not writable, or the disk is full (the
            destination is then untouched and the temporary file removed).

    Example:
        >>> import os, tempfile
        >>> d = tempfile.mkdtemp()
        >>> p = write_atomic(os.path.join(d, "results.md"), "# hello")
        >>> p.read_text()
        '# hello'
    """
    dest = Path(path)
    check_output_path(dest, what=what)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)

    return write_atomically(dest, write)
