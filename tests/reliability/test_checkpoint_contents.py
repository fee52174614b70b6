"""Checkpoints that are not regular files, hold the wrong contents, or cannot be moved aside.

* ``checkpoint.pt`` as a symlink to ``/dev/zero``, a FIFO, a folder, or over the size
  limit is refused at once (never read, never blocking); a resume falls back to
  ``checkpoint.prev.pt`` and ends bit-identical to an uninterrupted run.
* A checkpoint with a valid checksum but the wrong contents (``format`` 99, a missing
  field, a field of the wrong type) raises :class:`CheckpointError` naming the file and
  the field; a resume falls back to the previous checkpoint, as for a corrupted file.
* A bad current checkpoint whose usual ``.corrupt`` name is taken is moved to
  ``.corrupt.1``; one that cannot be moved at all stops the resume with both files kept
  byte for byte, and the caller's weights untouched.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from rejectnet.finetune import checkpoint as ckpt_mod
from rejectnet.finetune.checkpoint import (
    CHECKPOINT_FORMAT,
    CURRENT,
    MAGIC,
    PREVIOUS,
    CheckpointError,
    find_latest,
    read_checkpoint,
)
from tests.conftest import ReliabilityCounts
from tests.reliability._crashjob import build_net, run
from tests.reliability._helpers import same_weights, snapshot
from tests.reliability.test_checkpoint_faults import (  # noqa: F401 (fixtures)
    Reference,
    copy_of,
    reference,
    resume,
    stopped_at_4,
)


def _write_raw(path: Path, state: Any) -> None:
    """A checkpoint with a valid magic and checksum around any ``state``."""
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    path.write_bytes(MAGIC + hashlib.sha256(payload).digest() + payload)


def _within(seconds: float, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a daemon thread; fail (instead of hanging) if it blocks."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = fn()
        except BaseException as err:  # handed back to the test
            out["error"] = err

    t = threading.Thread(target=target, daemon=True)
    start = time.perf_counter()
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"blocked for more than {seconds} s"
    out["seconds"] = time.perf_counter() - start
    return out


# ---------------------------------------------------------------- not a regular file
def _make_special(kind: str, path: Path) -> None:
    if kind == "symlink_dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "symlink_to_folder":
        path.symlink_to(path.parent)
    elif kind == "dangling_symlink":
        path.symlink_to(path.parent / "nowhere")
    else:  # pragma: no cover
        raise AssertionError(kind)


SPECIAL = ["symlink_dev_zero", "fifo", "folder", "symlink_to_folder", "dangling_symlink"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only")
@pytest.mark.parametrize("kind", SPECIAL)
def test_special_file_is_refused_at_once(
    kind: str, tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    path = tmp_path / CURRENT
    _make_special(kind, path)
    out = _within(5.0, lambda: read_checkpoint(path))
    reliability.fault()
    err = out.get("error")
    assert isinstance(err, CheckpointError), out
    assert str(path) in str(err) and err.path == path
    expected = "does not exist" if kind == "dangling_symlink" else "not a regular file"
    assert expected in str(err)
    assert out["seconds"] < 1.0


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only")
@pytest.mark.parametrize("kind", ["symlink_dev_zero", "fifo", "folder"])
def test_resume_with_a_special_current_checkpoint_uses_the_previous(
    kind: str,
    stopped_at_4: Path,  # noqa: F811
    tmp_path: Path,
    reference: Reference,  # noqa: F811
    reliability: ReliabilityCounts,
) -> None:
    folder = copy_of(stopped_at_4, tmp_path)
    (folder / CURRENT).unlink()
    _make_special(kind, folder / CURRENT)
    reliability.fault()
    with pytest.warns(UserWarning, match="not a regular file.*falling back"):
        out = _within(60.0, lambda: resume(folder))
    assert "error" not in out, out.get("error")
    steps, net = out["value"]
    assert steps == [4, 5, 6], "resumed from checkpoint.prev.pt (step 3)"
    assert same_weights(net, reference)
    moved = folder / (CURRENT + ".corrupt")
    assert os.path.lexists(moved), "the special file was moved aside, not followed"
    if kind == "symlink_dev_zero":
        assert moved.is_symlink() and os.readlink(moved) == "/dev/zero"


def test_checkpoint_over_the_size_limit_is_refused_unread(
    stopped_at_4: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reliability: ReliabilityCounts,
) -> None:
    folder = copy_of(stopped_at_4, tmp_path)
    size = (folder / CURRENT).stat().st_size
    with pytest.raises(CheckpointError, match=r"more than the .* limit") as info:
        read_checkpoint(folder / CURRENT, max_bytes=size - 1)
    assert str(folder / CURRENT) in str(info.value)
    reliability.fault()
    assert read_checkpoint(folder / CURRENT, max_bytes=size)["step"] == 4
    # a sparse file of 1 TiB is refused by its size alone, in milliseconds
    huge = tmp_path / "huge.pt"
    with open(huge, "wb") as f:
        f.truncate(2**40)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="limit"):
        read_checkpoint(huge)
    assert time.perf_counter() - start < 0.5
    reliability.fault()


# ---------------------------------------------------------------- valid checksum, wrong contents
def _good_state(folder: Path) -> dict[str, Any]:
    return read_checkpoint(folder / CURRENT)


def _without(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda s: {k: v for k, v in s.items() if k != key}


def _with(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda s: {**s, key: value}


WRONG_CONTENTS: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "format_99": (_with("format", 99), "format"),
    "format_0": (_with("format", 0), "format"),
    "format_str": (_with("format", "1"), "format"),
    "format_bool": (_with("format", True), "format"),
    "format_missing": (_without("format"), "format"),
    "only_format": (lambda s: {"format": CHECKPOINT_FORMAT}, "name"),
    "model_missing": (_without("model"), "model"),
    "model_not_a_dict": (_with("model", [1, 2]), "model"),
    "model_holds_a_str": (lambda s: {**s, "model": {**s["model"], "w": "x"}}, "model"),
    "optimizer_missing": (_without("optimizer"), "optimizer"),
    "optimizer_no_groups": (_with("optimizer", {"state": {}}), "optimizer"),
    "step_str": (_with("step", "4"), "step"),
    "step_negative": (_with("step", -1), "step"),
    "epochs_zero": (_with("epochs", 0), "epochs"),
    "history_not_a_list": (_with("history", {"a": 1}), "history"),
    "world_size_missing": (_without("world_size"), "world_size"),
    "rng_missing": (_without("rng"), "rng"),
    "rng_torch_not_tensor": (lambda s: {**s, "rng": {**s["rng"], "torch": [1]}}, "rng"),
    "rank_states_short": (_with("rank_states", []), "rank_states"),
    "rank_state_lacks_rng": (
        lambda s: {**s, "rank_states": [{"epoch_rng": None, "acc": None, "outliers": None}]},
        "rng",
    ),
    "fingerprint_int": (_with("fingerprint", 5), "fingerprint"),
    "k_zero": (_with("k", 0), "k"),
}


@pytest.mark.parametrize("case", sorted(WRONG_CONTENTS))
def test_wrong_contents_name_the_file_and_field(
    case: str,
    stopped_at_4: Path,  # noqa: F811
    tmp_path: Path,
    reliability: ReliabilityCounts,
) -> None:
    change, field = WRONG_CONTENTS[case]
    path = tmp_path / CURRENT
    _write_raw(path, change(_good_state(stopped_at_4)))
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    reliability.fault()
    msg = str(info.value)
    assert str(path) in msg and repr(field)[1:-1] in msg, msg
    assert info.value.field == field and info.value.path == path
    if case == "format_99":
        assert "format 99" in msg and f"format {CHECKPOINT_FORMAT}" in msg and "newer" in msg


def test_not_a_dict_is_refused(tmp_path: Path, reliability: ReliabilityCounts) -> None:
    for i, value in enumerate([[1, 2], None, torch.zeros(3), {1: 2}]):
        path = tmp_path / f"c{i}.pt"
        _write_raw(path, value)
        with pytest.raises(CheckpointError, match="does not hold a state dict"):
            read_checkpoint(path)
        reliability.fault()


@pytest.mark.parametrize("case", ["format_99", "model_missing", "step_str", "rng_missing"])
def test_resume_falls_back_from_wrong_contents(
    case: str,
    stopped_at_4: Path,  # noqa: F811
    tmp_path: Path,
    reference: Reference,  # noqa: F811
    reliability: ReliabilityCounts,
) -> None:
    folder = copy_of(stopped_at_4, tmp_path)
    change, field = WRONG_CONTENTS[case]
    _write_raw(folder / CURRENT, change(_good_state(stopped_at_4)))
    reliability.fault()
    with pytest.warns(UserWarning, match=f"{field}.*falling back"):
        steps, net = resume(folder)
    assert steps == [4, 5, 6], "resumed from checkpoint.prev.pt (step 3)"
    assert same_weights(net, reference)
    assert (folder / (CURRENT + ".corrupt")).is_file()


# ---------------------------------------------------------------- moving aside
def test_corrupt_name_taken_by_a_folder_moves_to_the_next_name(
    stopped_at_4: Path,  # noqa: F811
    tmp_path: Path,
    reference: Reference,  # noqa: F811
    reliability: ReliabilityCounts,
) -> None:
    """The issue's case: ``checkpoint.pt.corrupt`` already exists as a folder."""
    folder = copy_of(stopped_at_4, tmp_path)
    bad = (folder / CURRENT).read_bytes()[:-10]
    (folder / CURRENT).write_bytes(bad)
    (folder / (CURRENT + ".corrupt")).mkdir()
    (folder / (CURRENT + ".corrupt") / "keep").write_text("x")
    reliability.fault(2)
    with pytest.warns(UserWarning, match="falling back"):
        steps, net = resume(folder)
    assert steps == [4, 5, 6] and same_weights(net, reference)
    assert (folder / (CURRENT + ".corrupt.1")).read_bytes() == bad
    assert (folder / (CURRENT + ".corrupt") / "keep").read_text() == "x"
    # the resumed run rotated only good checkpoints: prev is step 5, current step 6
    assert read_checkpoint(folder / PREVIOUS)["step"] == 5
    assert read_checkpoint(folder / CURRENT)["step"] == 6


def test_unmovable_bad_checkpoint_stops_the_resume_and_keeps_both(
    stopped_at_4: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reliability: ReliabilityCounts,
) -> None:
    folder = copy_of(stopped_at_4, tmp_path)
    bad = (folder / CURRENT).read_bytes()[:-10]
    (folder / CURRENT).write_bytes(bad)
    good_prev = (folder / PREVIOUS).read_bytes()

    class _NoRename:
        def __getattr__(self, name: str) -> Any:
            if name == "rename":

                def fail(*_: Any) -> None:
                    raise OSError(errno.EROFS, os.strerror(errno.EROFS))

                return fail
            return getattr(os, name)

    monkeypatch.setattr(ckpt_mod, "os", _NoRename())
    net = build_net()
    before = snapshot(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning: it stops instead
        with pytest.raises(CheckpointError, match="could not be moved aside") as info:
            run(folder, resume=True, net=net)
    reliability.fault(2)
    msg = str(info.value)
    assert str(folder / CURRENT) in msg and "both files are kept" in msg
    assert "Read-only file system" in msg
    assert (folder / CURRENT).read_bytes() == bad
    assert (folder / PREVIOUS).read_bytes() == good_prev
    assert same_weights(net, before), "the caller's weights were not touched"
    monkeypatch.undo()
    with pytest.warns(UserWarning, match="falling back"):
        found = find_latest(folder)  # once it can be moved, the previous one is used
    assert found is not None and found.path == folder / PREVIOUS and found.state["step"] == 3
