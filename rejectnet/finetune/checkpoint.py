"""Crash-safe training checkpoints.

A checkpoint file is ``MAGIC + sha256(payload) + payload``, where the payload is a
``torch.save`` of plain containers and tensors. Writing goes to a temporary file in the
same folder, is flushed to disk, and replaces the current checkpoint with an atomic
rename; the previous checkpoint is kept as ``checkpoint.prev.pt``. Reading verifies the
checksum before deserialising, and deserialises with ``torch.load(weights_only=True)``,
which refuses arbitrary pickled objects. A corrupted latest checkpoint falls back to the
previous one with a warning, and is moved aside (``checkpoint.pt.corrupt``) so that the
next write cannot rotate it over the good previous checkpoint.

Temporary files carry the writer's host name and process id; a run that starts in the
folder removes those left behind by writers of this host that were killed mid-write.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import socket
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "latest_checkpoint", "read_checkpoint", "write_checkpoint"]

logger = logging.getLogger("rejectnet")

MAGIC = b"REJECTNET-CKPT-1\n"
CURRENT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
CORRUPT_SUFFIX = ".corrupt"
_TMP_PREFIX = ".checkpoint-"
_TMP_SUFFIX = ".tmp"


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated or corrupted.

    A ``ValueError``; ``fit(..., resume=True)`` falls back to the previous checkpoint
    with a warning when only the latest one is damaged.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from rejectnet.finetune.checkpoint import read_checkpoint
        >>> bad = Path(tempfile.mkdtemp()) / "checkpoint.pt"
        >>> _ = bad.write_bytes(b"not a checkpoint")
        >>> try:
        ...     read_checkpoint(bad)
        ... except CheckpointError as err:
        ...     print("refused:", "truncated" in str(err))
        refused: True
    """


def _host() -> str:
    return socket.gethostname().replace("-", "_") or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: the process exists but belongs to someone else
        return True
    return True


def remove_stale_temp_files(directory: Path) -> list[Path]:
    """Delete temporary files of checkpoint writers (on this host) that were killed.

    A writer killed mid-write leaves a full-size ``.checkpoint-<host>-<pid>-*.tmp``
    behind; files of live processes and of other hosts are left alone.

    Returns:
        The files removed.
    """
    removed: list[Path] = []
    host = _host()
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(_TMP_PREFIX) and name.endswith(_TMP_SUFFIX)):
            continue
        parts = name[len(_TMP_PREFIX) : -len(_TMP_SUFFIX)].rsplit("-", 2)
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid() or _pid_alive(pid):
            continue
        try:
            os.unlink(directory / name)
        except OSError:
            continue
        removed.append(directory / name)
        logger.info("removed %s, left behind by an interrupted checkpoint write", name)
    return removed


def check_writable(directory: Path) -> None:
    """Fail early if checkpoints cannot be written to ``directory``.

    Also removes temporary files left behind by interrupted writes (see
    :func:`remove_stale_temp_files`).

    Raises:
        PermissionError: If the folder cannot be created or written to.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise PermissionError(
            f"checkpoint_dir {str(directory)!r} is not writable ({err}); choose a folder "
            "you can write to, or pass checkpoint_dir=None"
        ) from err
    remove_stale_temp_files(directory)


def write_checkpoint(directory: Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` as the current checkpoint in ``directory``.

    Raises:
        OSError: If writing fails (disk full, I/O error, folder no longer writable), with
            the original ``errno`` and a message naming the folder. The last good
            checkpoint is left untouched and no temporary file is left behind.
    """
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    digest = hashlib.sha256(payload).digest()
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f"{_TMP_PREFIX}{_host()}-{os.getpid()}-", suffix=_TMP_SUFFIX, dir=directory
        )
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC)
            f.write(digest)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        current = directory / CURRENT
        if current.exists():
            os.replace(current, directory / PREVIOUS)
        os.replace(tmp, current)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise _write_error(directory, err) from err
        raise
    return directory / CURRENT


def _write_error(directory: Path, err: OSError) -> OSError:
    good = [name for name in (CURRENT, PREVIOUS) if (directory / name).exists()]
    kept = (
        f"the last good checkpoint ({', '.join(good)}) is intact, and fit(..., resume=True) "
        "continues from it"
        if good
        else "no earlier checkpoint exists"
    )
    msg = (
        f"could not write a checkpoint to checkpoint_dir {str(directory)!r}: "
        f"{err.strerror or err}; {kept}. Free disk space or choose another checkpoint_dir"
    )
    return OSError(err.errno, msg) if err.errno is not None else OSError(msg)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Read and verify one checkpoint file.

    Raises:
        CheckpointError: If the file is missing, truncated, fails its checksum, or holds
            anything but tensors and plain containers (nothing in it is executed).
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {err}") from err
    head = len(MAGIC) + 32
    if len(data) < head or not data.startswith(MAGIC):
        raise CheckpointError(f"{str(path)!r} is not a rejectnet checkpoint or is truncated")
    digest, payload = data[len(MAGIC) : head], data[head:]
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f"checkpoint {str(path)!r} fails its checksum (corrupted)")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, ... from the restricted loader
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be loaded safely: it holds something other than "
            f"tensors and plain containers, which is refused without executing it ({first})"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} does not hold a state dict")
    return state


def latest_checkpoint(directory: Path) -> dict[str, Any] | None:
    """The newest valid checkpoint in ``directory``, or ``None`` if there is none.

    A corrupted current checkpoint is reported with a warning, moved aside to
    ``checkpoint.pt.corrupt`` (so that the next write does not rotate it over the good
    previous checkpoint), and the previous one used.
    """
    remove_stale_temp_files(directory)
    candidates = [directory / CURRENT, directory / PREVIOUS]
    for path in candidates:
        if not path.exists():
            continue
        try:
            return read_checkpoint(path)
        except CheckpointError as err:
            warnings.warn(f"{err}; falling back to an older checkpoint", stacklevel=2)
            logger.warning("%s; falling back to an older checkpoint", err)
            if path.name == CURRENT:
                try:
                    os.replace(path, path.with_name(CURRENT + CORRUPT_SUFFIX))
                except OSError:
                    pass
    return None
