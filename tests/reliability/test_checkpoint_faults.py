"""Corrupted checkpoints, a full disk and unwritable folders, injected in-process.

* A truncated or bit-flipped ``checkpoint.pt`` fails its checksum; resuming warns, uses
  ``checkpoint.prev.pt`` and still ends bit-identical to an uninterrupted run.
* ``ENOSPC``/``EIO``/``EACCES`` at any stage of a checkpoint write stops training with a
  clear ``OSError`` (same errno) and leaves the last good checkpoint readable; resuming
  from it ends bit-identical to an uninterrupted run.
* A checkpoint folder that cannot be written fails ``fit`` before the first step, without
  touching the model.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from rejectnet.finetune import Callback, FitView, StopTraining
from rejectnet.finetune import checkpoint as ckpt_mod
from rejectnet.finetune.checkpoint import (
    CURRENT,
    MAGIC,
    PREVIOUS,
    CheckpointError,
    latest_checkpoint,
    read_checkpoint,
)
from tests.conftest import ReliabilityCounts
from tests.reliability._crashjob import TOTAL_STEPS, build_net, run, single_thread
from tests.reliability._helpers import same_weights, snapshot

Reference = dict[str, torch.Tensor]


class Recorder(Callback):
    def __init__(self, stop_at: int | None = None) -> None:
        self.steps: list[int] = []
        self.stop_at = stop_at

    def on_step_end(self, view: FitView, step: int) -> None:
        self.steps.append(step)
        if step == self.stop_at:
            raise StopTraining


@pytest.fixture(scope="module")
def reference() -> Reference:
    with single_thread():
        net, _ = run(None)
    return snapshot(net)


@pytest.fixture(scope="module")
def stopped_at_4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint folder of a run stopped after step 4: current = step 4, prev = step 3."""
    folder = tmp_path_factory.mktemp("stopped") / "ckpt"
    with single_thread():
        run(folder, callbacks=[Recorder(stop_at=4)])
    assert read_checkpoint(folder / CURRENT)["step"] == 4
    assert read_checkpoint(folder / PREVIOUS)["step"] == 3
    return folder


def resume(folder: Path) -> tuple[list[int], Any]:
    rec = Recorder()
    with single_thread():
        net, _ = run(folder, resume=True, callbacks=[rec])
    return rec.steps, net


def copy_of(folder: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "ckpt"
    shutil.copytree(folder, dest)
    return dest


# ---------------------------------------------------------------- corrupted checkpoint.pt
def _flip(offset: Callable[[int], int]) -> Callable[[bytes], bytes]:
    def corrupt(data: bytes) -> bytes:
        i = offset(len(data))
        return data[:i] + bytes([data[i] ^ 0x40]) + data[i + 1 :]

    return corrupt


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "truncated_half": lambda d: d[: len(d) // 2],
    "truncated_last_byte": lambda d: d[:-1],
    "truncated_inside_header": lambda d: d[: len(MAGIC) + 5],
    "empty": lambda d: b"",
    "flip_payload_byte": _flip(lambda n: n // 2),
    "flip_last_byte": _flip(lambda n: n - 1),
    "flip_checksum_byte": _flip(lambda n: len(MAGIC) + 3),
    "flip_magic_byte": _flip(lambda n: 2),
    "appended_garbage": lambda d: d + b"\x00garbage",
    "zeroed_block": lambda d: d[:1000] + bytes(512) + d[1512:],
}
_WARNING = r"(fails its checksum|truncated|not a rejectnet checkpoint).*falling back"


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupted_latest_checkpoint_falls_back_to_previous(
    corruption: str,
    stopped_at_4: Path,
    tmp_path: Path,
    reference: Reference,
    reliability: ReliabilityCounts,
) -> None:
    folder = copy_of(stopped_at_4, tmp_path)
    current = folder / CURRENT
    current.write_bytes(CORRUPTIONS[corruption](current.read_bytes()))
    reliability.fault()
    with pytest.raises(CheckpointError, match=r"checksum|truncated|not a rejectnet"):
        read_checkpoint(current)
    with pytest.warns(UserWarning, match=_WARNING):
        steps, net = resume(folder)
    assert steps == [4, 5, 6], "resumed from checkpoint.prev.pt (step 3)"
    assert same_weights(net, reference)
    assert (folder / (CURRENT + ".corrupt")).exists(), "the bad file is kept for inspection"


def test_both_checkpoints_corrupted_starts_over(
    stopped_at_4: Path, tmp_path: Path, reference: Reference, reliability: ReliabilityCounts
) -> None:
    folder = copy_of(stopped_at_4, tmp_path)
    for name in (CURRENT, PREVIOUS):
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 3])
        reliability.fault()
    with pytest.warns(UserWarning, match=_WARNING) as caught:
        steps, net = resume(folder)
    assert len([w for w in caught if "falling back" in str(w.message)]) == 2
    assert steps == list(range(1, TOTAL_STEPS + 1))
    assert same_weights(net, reference)


class _Crash(BaseException):
    """Stands in for a SIGKILL inside the checkpoint writer."""


class _OSProxy:
    """Replaces ``os`` inside rejectnet.finetune.checkpoint; ``hooks`` may raise."""

    def __init__(self, **hooks: Callable[..., Any]) -> None:
        self.hooks = hooks
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return self.hooks.get(name, getattr(os, name))


def test_corrupted_current_cannot_be_rotated_over_the_good_previous(
    stopped_at_4: Path,
    tmp_path: Path,
    reference: Reference,
    monkeypatch: pytest.MonkeyPatch,
    reliability: ReliabilityCounts,
) -> None:
    """Corrupt checkpoint.pt, then crash in the first write of the resumed run.

    Had the corrupted file been rotated to checkpoint.prev.pt, no good checkpoint would
    be left; the good one (step 3) must survive the crash.
    """
    folder = copy_of(stopped_at_4, tmp_path)
    data = (folder / CURRENT).read_bytes()
    (folder / CURRENT).write_bytes(data[:-10])

    def replace(src: Any, dst: Any) -> None:
        if str(src).endswith(".tmp"):
            raise _Crash
        os.replace(src, dst)

    monkeypatch.setattr(ckpt_mod, "os", _OSProxy(replace=replace))
    with pytest.warns(UserWarning, match=_WARNING), pytest.raises(_Crash):
        resume(folder)
    reliability.fault(2)
    monkeypatch.undo()
    assert read_checkpoint(folder / PREVIOUS)["step"] == 3
    steps, net = resume(folder)
    assert steps == [4, 5, 6]
    assert same_weights(net, reference)


# ---------------------------------------------------------------- disk full / I/O errors
def _raise(code: int) -> Callable[..., Any]:
    def fail(*_: Any, **__: Any) -> Any:
        raise OSError(code, os.strerror(code))

    return fail


class _Failing:
    """Counts checkpoint writes; the ``n``-th one fails at ``stage`` with ``code``."""

    def __init__(self, stage: str, n: int, code: int) -> None:
        self.stage, self.n, self.code = stage, n, code
        self.writes = 0

    def mkstemp(self, *args: Any, **kwargs: Any) -> tuple[int, str]:
        self.writes += 1
        if self.stage == "mkstemp" and self.writes == self.n:
            _raise(self.code)()
        return tempfile.mkstemp(*args, **kwargs)

    def fdopen(self, fd: int, mode: str) -> Any:
        f = os.fdopen(fd, mode)
        if self.stage == "write" and self.writes == self.n:
            code = self.code

            class Half:
                calls = 0

                def __enter__(self) -> Half:
                    return self

                def __exit__(self, *exc: object) -> None:
                    f.close()

                def write(self, data: bytes) -> int:
                    Half.calls += 1
                    if Half.calls == 3:  # the payload: half of it fits, then the disk is full
                        f.write(data[: len(data) // 2])
                        _raise(code)()
                    return int(f.write(data))

                def __getattr__(self, name: str) -> Any:
                    return getattr(f, name)

            return Half()
        return f

    def fsync(self, fd: int) -> None:
        if self.stage == "fsync" and self.writes == self.n:
            _raise(self.code)()
        os.fsync(fd)

    def replace(self, src: Any, dst: Any) -> None:
        if self.stage == "rename" and self.writes == self.n and str(src).endswith(".tmp"):
            _raise(self.code)()
        os.replace(src, dst)


class _TempfileProxy:
    def __init__(self, failing: _Failing) -> None:
        self.failing = failing

    def __getattr__(self, name: str) -> Any:
        if name == "mkstemp":
            return self.failing.mkstemp
        return getattr(tempfile, name)


# (stage, n-th write, errno, step of the checkpoint that must survive)
WRITE_FAULTS = [
    ("fsync", 3, errno.ENOSPC, 2),
    ("write", 4, errno.ENOSPC, 3),
    ("write", 1, errno.ENOSPC, None),
    ("mkstemp", 2, errno.EACCES, 1),
    ("mkstemp", 5, errno.ENOSPC, 4),
    ("rename", 5, errno.EIO, 4),
]


@pytest.mark.parametrize(
    ("stage", "n", "code", "survivor"),
    WRITE_FAULTS,
    ids=[f"{s}{n}-{errno.errorcode[c]}" for s, n, c, _ in WRITE_FAULTS],
)
def test_failing_write_keeps_last_good_checkpoint(
    stage: str,
    n: int,
    code: int,
    survivor: int | None,
    tmp_path: Path,
    reference: Reference,
    monkeypatch: pytest.MonkeyPatch,
    reliability: ReliabilityCounts,
) -> None:
    folder = tmp_path / "ckpt"
    failing = _Failing(stage, n, code)
    failing.writes = -1  # mkstemp counts the writes; check_writable's probe is write 0
    monkeypatch.setattr(ckpt_mod, "os", failing_os := _OSProxy())
    failing_os.hooks.update(fdopen=failing.fdopen, fsync=failing.fsync, replace=failing.replace)
    monkeypatch.setattr(ckpt_mod, "tempfile", _TempfileProxy(failing))
    rec = Recorder()
    with single_thread(), pytest.raises(OSError) as info:
        run(folder, callbacks=[rec])
    reliability.fault()
    monkeypatch.undo()
    err = info.value
    assert err.errno == code
    msg = str(err)
    assert "checkpoint_dir" in msg and str(folder) in msg and os.strerror(code) in msg
    assert ("is intact" in msg) == (survivor is not None), msg
    assert rec.steps == list(range(1, n + 1)), "write n follows step n"
    assert not list(folder.glob(".checkpoint-*.tmp")), "no temporary file left behind"
    if survivor is None:
        assert latest_checkpoint(folder) is None
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the survivor is valid: no fallback warning
        state = latest_checkpoint(folder)
    assert state is not None and state["step"] == survivor
    steps, net = resume(folder)
    assert steps == list(range(survivor + 1, TOTAL_STEPS + 1))
    assert same_weights(net, reference)


# ---------------------------------------------------------------- unwritable folders
def _under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "file").write_text("not a folder")
    return tmp_path / "file" / "ckpt"


def _a_file(tmp_path: Path) -> Path:
    (tmp_path / "file").write_text("not a folder")
    return tmp_path / "file"


UNWRITABLE: dict[str, Callable[[Path, pytest.MonkeyPatch], Path]] = {
    "below_a_regular_file": lambda p, m: _under_a_file(p),
    "is_a_regular_file": lambda p, m: _a_file(p),
    # chmod 0o500 does not stop root, so deny the write the way the kernel would
    "permission_denied": lambda p, m: (
        m.setattr(ckpt_mod, "tempfile", _TempfileProxy(_Failing("mkstemp", 1, errno.EACCES))),
        p / "ckpt",
    )[1],
    "read_only_filesystem": lambda p, m: (
        m.setattr(ckpt_mod, "tempfile", _TempfileProxy(_Failing("mkstemp", 1, errno.EROFS))),
        p / "ckpt",
    )[1],
}


@pytest.mark.parametrize("kind", sorted(UNWRITABLE))
def test_unwritable_checkpoint_dir_fails_before_training(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reliability: ReliabilityCounts
) -> None:
    folder = UNWRITABLE[kind](tmp_path, monkeypatch)
    reliability.fault()
    net = build_net()
    before = snapshot(net)
    rec = Recorder()
    with single_thread(), pytest.raises(PermissionError, match="checkpoint_dir") as info:
        run(folder, callbacks=[rec], net=net)
    assert str(folder) in str(info.value) and "not writable" in str(info.value)
    assert "checkpoint_dir=None" in str(info.value), "the message says what would work"
    assert rec.steps == [], "no training step before the error"
    assert same_weights(net, before), "the model is untouched"
