"""Crash-safe training checkpoints.

A checkpoint file is ``MAGIC + sha256(payload) + payload``, where the payload is a
``torch.save`` of plain containers and tensors. Writing goes to a temporary file in the
same folder, is flushed to disk, and replaces the current checkpoint with an atomic
rename; the previous checkpoint is kept as ``checkpoint.prev.pt``. Reading verifies the
checksum before deserialising, and deserialises with ``torch.load(weights_only=True)``,
which refuses arbitrary pickled objects. A corrupted latest checkpoint falls back to the
previous one with a warning.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
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


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated or corrupted."""


def check_writable(directory: Path) -> None:
    """Fail early if checkpoints cannot be written to ``directory``.

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


def write_checkpoint(directory: Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` as the current checkpoint in ``directory``.

    If writing fails (disk full, I/O error) the exception propagates and the last good
    checkpoint is left untouched.
    """
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    digest = hashlib.sha256(payload).digest()
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=directory)
    try:
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
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return directory / CURRENT


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Read and verify one checkpoint file.

    Raises:
        CheckpointError: If the file is missing, truncated, or fails its checksum.
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
    state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} does not hold a state dict")
    return state


def latest_checkpoint(directory: Path) -> dict[str, Any] | None:
    """The newest valid checkpoint in ``directory``, or ``None`` if there is none.

    A corrupted current checkpoint is reported with a warning and the previous one used.
    """
    candidates = [directory / CURRENT, directory / PREVIOUS]
    for path in candidates:
        if not path.exists():
            continue
        try:
            return read_checkpoint(path)
        except CheckpointError as err:
            warnings.warn(f"{err}; falling back to an older checkpoint", stacklevel=2)
            logger.warning("%s; falling back to an older checkpoint", err)
    return None
