"""Crash-safe training checkpoints.

A checkpoint file is ``MAGIC + sha256(payload) + payload``, where the payload is a
``torch.save`` of plain containers and tensors. Writing goes to a temporary file in the
same folder, is flushed to disk, and replaces the current checkpoint with an atomic
rename; the previous checkpoint is kept as ``checkpoint.prev.pt``. Reading verifies the
checksum before deserialising, and deserialises with ``torch.load(weights_only=True)``,
which refuses arbitrary pickled objects. Files are read with the bounded, regular-file-only
reader of :mod:`rejectnet.files.bounded_reads`: a symlink to ``/dev/zero``, a FIFO, a folder
or a file over :data:`MAX_CHECKPOINT_BYTES` is refused without being read (and never blocks).

After the checksum, the contents are checked (:func:`check_contents`): the ``format``
field is read and a format this rejectnet does not know is refused, and every field the
resume reads must be present with the right type. Any of these failures raises
:class:`CheckpointError` naming the file and the field.

A latest checkpoint that fails any of these checks falls back to the previous one with a
warning, and is moved aside (``checkpoint.pt.corrupt``, or ``checkpoint.pt.corrupt.1``,
``.2``, ... when that name is taken) so that the next write cannot rotate it over the
good previous checkpoint. If it cannot be moved aside (a read-only folder, say), the
resume stops with a :class:`CheckpointError` and *both files are kept*: the next write
would otherwise turn the bad file into ``checkpoint.prev.pt`` and lose the good one.

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
from typing import Any, NamedTuple

import torch

from rejectnet.files.bounded_reads import UnsafeFileError, open_regular

__all__ = [
    "CHECKPOINT_FORMAT",
    "MAX_CHECKPOINT_BYTES",
    "MAX_RUN_CONFIG_CHARS",
    "CheckpointError",
    "LoadedCheckpoint",
    "check_contents",
    "find_latest",
    "latest_checkpoint",
    "read_checkpoint",
    "write_checkpoint",
]

logger = logging.getLogger("rejectnet")

MAGIC = b"REJECTNET-CKPT-1\n"
CURRENT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
CORRUPT_SUFFIX = ".corrupt"
_TMP_PREFIX = ".checkpoint-"
_TMP_SUFFIX = ".tmp"

CHECKPOINT_FORMAT = 1
"""The checkpoint format this rejectnet writes and reads; other formats are refused."""

MAX_CHECKPOINT_BYTES = 64 * 2**30
"""The largest checkpoint file :func:`read_checkpoint` reads by default (64 GiB)."""
MAX_RUN_CONFIG_CHARS = 1_000_000
"""The longest ``run_config`` (the run's settings as JSON text) a checkpoint may hold."""


class CheckpointError(ValueError):
    """A checkpoint is unreadable, corrupted, of an unknown format, or does not fit the run.

    A ``ValueError``. ``fit(..., resume=True)`` falls back to the previous checkpoint with
    a warning when only the latest one is damaged (unreadable, failing its checksum, an
    unknown ``format``, a missing or mistyped field). A checkpoint that is intact but does
    not fit the model, optimizer or run being resumed (see
    :func:`rejectnet.finetune.resume.validate_resume`) is refused without falling back.

    Attributes:
        path: The checkpoint file, when one is concerned.
        field: The field that is wrong (``"format"``, ``"model"``, ``"k"``, ...), or
            ``None`` when the whole file is (unreadable, corrupted).

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

    def __init__(self, message: str, path: Path | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.field = field


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


def read_checkpoint(path: Path, *, max_bytes: int = MAX_CHECKPOINT_BYTES) -> dict[str, Any]:
    """Read and verify one checkpoint file.

    The file is read with a bounded, regular-file-only reader, its checksum verified, it
    is deserialised without executing anything, and its contents are checked with
    :func:`check_contents`.

    Args:
        path: The checkpoint file.
        max_bytes: The largest file accepted (default :data:`MAX_CHECKPOINT_BYTES`).

    Returns:
        The checkpoint's state dict.

    Raises:
        CheckpointError: If the file is missing, not a regular file (a symlink to
            ``/dev/zero``, a FIFO, a folder), larger than ``max_bytes``, truncated, fails
            its checksum, holds anything but tensors and plain containers (nothing in it
            is executed), is of an unknown ``format``, or lacks a field or has one of
            the wrong type. The message names the file (and the field).
    """
    head = len(MAGIC) + 32
    try:
        with open_regular(path, max_bytes=max_bytes, what="checkpoint") as f:
            if f.size < head:
                raise CheckpointError(
                    f"{str(path)!r} is not a rejectnet checkpoint or is truncated", path
                )
            start = f.read_exact(head)
            payload = f.read_rest()
    except (OSError, UnsafeFileError) as err:
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {err}", path) from err
    if not start.startswith(MAGIC):
        raise CheckpointError(f"{str(path)!r} is not a rejectnet checkpoint or is truncated", path)
    if hashlib.sha256(payload).digest() != start[len(MAGIC) :]:
        raise CheckpointError(f"checkpoint {str(path)!r} fails its checksum (corrupted)", path)
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, ... from the restricted loader
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be loaded safely: it holds something other than "
            f"tensors and plain containers, which is refused without executing it ({first})",
            path,
        ) from None
    del payload
    return check_contents(state, path)


# ---------------------------------------------------------------- contents
def _is_int(v: Any, low: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _is_tensor_dict(v: Any) -> bool:
    return isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in v.items()
    )


def _is_optimizer_state(v: Any) -> bool:
    return (
        isinstance(v, dict)
        and isinstance(v.get("state"), dict)
        and isinstance(v.get("param_groups"), list)
        and all(
            isinstance(g, dict)
            and isinstance(g.get("params"), list)
            and all(_is_int(p) for p in g["params"])
            for g in v["param_groups"]
        )
    )


def _is_rng(v: Any) -> bool:
    return (
        isinstance(v, dict)
        and isinstance(v.get("torch"), torch.Tensor)
        and isinstance(v.get("pseudo", torch.empty(0)), torch.Tensor)
        and isinstance(v.get("numpy"), dict)
        and isinstance(v.get("python"), (tuple, list))
    )


def _optional(check: Any) -> Any:
    return lambda v: v is None or check(v)


_RUN_FIELDS: dict[str, tuple[Any, str]] = {
    "name": (lambda v: isinstance(v, str), "a str"),
    "epochs": (lambda v: _is_int(v, 1), "an int >= 1"),
    "epoch": (_is_int, "an int >= 0"),
    "step": (_is_int, "an int >= 0"),
    "batch_in_epoch": (_is_int, "an int >= 0"),
    "model": (_is_tensor_dict, "a dict of tensors (a state_dict)"),
    "optimizer": (_is_optimizer_state, "an optimizer state_dict"),
    "scheduler": (_optional(lambda v: isinstance(v, dict)), "a dict or None"),
    "scaler": (_optional(lambda v: isinstance(v, dict)), "a dict or None"),
    "history": (
        lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v),
        "a list of dicts",
    ),
    "world_size": (lambda v: _is_int(v, 1), "an int >= 1"),
}
_OPTIONAL_FIELDS: dict[str, tuple[Any, str]] = {
    "sampler_seed": (_is_int, "an int >= 0"),
    "num_classes": (lambda v: _is_int(v, 1), "an int >= 1"),
    "k": (lambda v: _is_int(v, 1), "an int >= 1"),
    "fingerprint": (lambda v: isinstance(v, str) and len(v) <= 128, "a str"),
    "run_config": (
        lambda v: isinstance(v, str) and len(v) <= MAX_RUN_CONFIG_CHARS,
        "a str (JSON) of at most 1,000,000 characters",
    ),
}
_RANK_FIELDS: dict[str, tuple[Any, str]] = {
    "epoch_rng": (_optional(lambda v: isinstance(v, torch.Tensor)), "a tensor or None"),
    "acc": (_optional(_is_tensor_dict), "a dict of tensors or None"),
    "rng": (_is_rng, "a dict of RNG states (torch, numpy, python)"),
    "outliers": (_optional(lambda v: isinstance(v, dict)), "a dict or None"),
}


def _check_fields(
    state: dict[str, Any], fields: dict[str, tuple[Any, str]], path: Path, where: str = ""
) -> None:
    for key, (ok, expected) in fields.items():
        if key not in state:
            raise CheckpointError(
                f"checkpoint {str(path)!r} lacks the field {where}{key!r}; it was not written "
                "by this rejectnet's training loop, or was altered",
                path,
                key,
            )
        if not ok(state[key]):
            raise CheckpointError(
                f"checkpoint {str(path)!r} has an invalid {where}{key!r} "
                f"({type(state[key]).__name__}); it must be {expected}",
                path,
                key,
            )


def _check_format(state: dict[str, Any], path: Path) -> None:
    """The ``format`` field is present, an int, and the one this rejectnet reads."""
    fmt: Any = state.get("format")
    if "format" not in state:
        raise CheckpointError(
            f"checkpoint {str(path)!r} lacks the field 'format'; it was not written by "
            "rejectnet's training loop, or was altered",
            path,
            "format",
        )
    if not _is_int(fmt, 1):
        raise CheckpointError(
            f"checkpoint {str(path)!r} has an invalid 'format' ({fmt!r}); it must be an int "
            f"(this rejectnet writes format {CHECKPOINT_FORMAT})",
            path,
            "format",
        )
    if fmt != CHECKPOINT_FORMAT:
        newer = "a newer" if fmt > CHECKPOINT_FORMAT else "an older"
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format {fmt}, written by {newer} rejectnet; this "
            f"rejectnet reads only format {CHECKPOINT_FORMAT}. Resume with the rejectnet "
            "version that wrote it, or start a new run in another checkpoint_dir",
            path,
            "format",
        )


def check_contents(state: Any, path: Path) -> dict[str, Any]:
    """Check that a deserialised checkpoint has the format and fields a resume reads.

    The ``format`` field is read first: a checkpoint of another format (a newer
    rejectnet's, say) is refused with a message naming both formats. Then every field
    the resume reads must be present with the right type (tensors where tensors belong,
    a ``state_dict`` for the model, an optimizer ``state_dict``, RNG states, and, for a
    multi-process run, one such set per rank). Extra fields are allowed. Whether the
    contents *fit* the model being resumed is checked later, by
    :func:`rejectnet.finetune.resume.validate_resume`.

    Args:
        state: What :func:`torch.load` returned.
        path: The file it came from, for messages.

    Returns:
        ``state``, unchanged.

    Raises:
        CheckpointError: Naming the file and the first field that is missing or wrong.
    """
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"checkpoint {str(path)!r} does not hold a state dict", path)
    _check_format(state, path)
    _check_fields(state, _RUN_FIELDS, path)
    for key, (ok, expected) in _OPTIONAL_FIELDS.items():
        if key in state and not ok(state[key]):
            raise CheckpointError(
                f"checkpoint {str(path)!r} has an invalid {key!r} "
                f"({type(state[key]).__name__}); it must be {expected}",
                path,
                key,
            )
    ranks = state.get("rank_states")
    if ranks is None:
        _check_fields(state, _RANK_FIELDS, path)
        return state
    if not (
        isinstance(ranks, list)
        and len(ranks) == state["world_size"]
        and all(isinstance(r, dict) for r in ranks)
    ):
        raise CheckpointError(
            f"checkpoint {str(path)!r} has an invalid 'rank_states'; it must be a list of "
            f"world_size={state['world_size']} dicts",
            path,
            "rank_states",
        )
    for i, own in enumerate(ranks):
        _check_fields(own, _RANK_FIELDS, path, where=f"rank_states[{i}].")
    return state


# ---------------------------------------------------------------- the newest valid one
class LoadedCheckpoint(NamedTuple):
    """A checkpoint read from a folder: the file it came from and its state."""

    path: Path
    state: dict[str, Any]


def _move_aside(path: Path, reason: CheckpointError) -> Path:
    """Rename an unusable current checkpoint so that the next write cannot rotate it."""
    last: OSError | None = None
    for i in range(100):
        target = path.with_name(path.name + CORRUPT_SUFFIX + (f".{i}" if i else ""))
        if os.path.lexists(target):
            continue
        try:
            os.rename(path, target)  # never over an existing name (checked just above)
        except OSError as err:
            last = err
            break
        return target
    why = f"{last.strerror or last}" if last is not None else "every name for it is taken"
    previous = path.with_name(PREVIOUS)
    raise CheckpointError(
        f"{reason}; it could not be moved aside to {path.name}{CORRUPT_SUFFIX} ({why}), so "
        f"the resume stops here to keep the good {previous.name}: resuming would rotate the "
        f"bad file over it at the next checkpoint. Nothing was changed: both files are "
        f"kept. Move or delete {str(path)!r} yourself, then resume again",
        path,
        reason.field,
    ) from reason


def find_latest(
    directory: Path, *, max_bytes: int = MAX_CHECKPOINT_BYTES
) -> LoadedCheckpoint | None:
    """The newest valid checkpoint in ``directory`` and its path, or ``None`` if there is none.

    A current checkpoint that cannot be used (unreadable, corrupted, unknown format,
    missing or mistyped fields) is reported with a warning, moved aside to
    ``checkpoint.pt.corrupt`` (or ``.corrupt.1``, ... when that name is taken) so that
    the next write does not rotate it over the good previous checkpoint, and the previous
    one used.

    Args:
        directory: The checkpoint folder.
        max_bytes: The largest checkpoint file accepted.

    Raises:
        CheckpointError: If the current checkpoint is unusable and cannot be moved aside;
            both files are then left as they are.
    """
    remove_stale_temp_files(directory)
    for path in (directory / CURRENT, directory / PREVIOUS):
        if not os.path.lexists(path):
            continue
        try:
            return LoadedCheckpoint(path, read_checkpoint(path, max_bytes=max_bytes))
        except CheckpointError as err:
            if path.name == CURRENT:
                _move_aside(path, err)  # raises, keeping both, if it cannot
            warnings.warn(f"{err}; falling back to an older checkpoint", stacklevel=2)
            logger.warning("%s; falling back to an older checkpoint", err)
    return None


def latest_checkpoint(
    directory: Path, *, max_bytes: int = MAX_CHECKPOINT_BYTES
) -> dict[str, Any] | None:
    """The state of the newest valid checkpoint in ``directory``, or ``None``.

    The same as :func:`find_latest`, without the path.

    Raises:
        CheckpointError: If the current checkpoint is unusable and cannot be moved aside.
    """
    found = find_latest(directory, max_bytes=max_bytes)
    return None if found is None else found.state
