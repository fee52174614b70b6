"""SIGKILL a fine-tuning run mid-step and mid-checkpoint-write, resume it, compare bit for bit.

Each case trains in a child process (forked by the ``tests.reliability._crashjob
--serve`` subprocess) that kills itself with ``SIGKILL`` at one point (see that module
for the list), then resumes in this process with ``fit(..., resume=True)``. The resumed
run must take exactly the steps the surviving checkpoint left to do, and end with the
same weights (``torch.equal``) and epoch statistics as a run never interrupted.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from rejectnet.finetune import Callback, EpochStats, FitView, History
from tests.conftest import ReliabilityCounts
from tests.reliability._crashjob import TOTAL_STEPS, run, single_thread
from tests.reliability._helpers import same_weights, snapshot

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")

REPO = Path(__file__).resolve().parents[2]

# (where the child is killed, the first step the resumed run must take).
# 3 steps per epoch, 2 epochs; checkpoints after steps 1, 2, 4, 5 and at both epoch ends
# (writes #1..#6 follow steps 1, 2, 3, 4, 5, 6).
KILLS = [
    ("step:1", 1),  # after the first optimizer step, before any checkpoint exists
    ("forward:2", 2),  # inside the forward pass of step 2
    ("step:3", 3),  # after the last step of epoch 1, before the epoch-end checkpoint
    ("epoch_end:1", 4),  # right after the epoch-end checkpoint
    ("backward:5", 5),  # inside the backward pass of step 5
    ("write_partial:1", 1),  # half of the very first checkpoint on disk
    ("write_partial:4", 4),  # half of step 4's checkpoint on disk
    ("before_rename:2", 2),  # step 2's checkpoint complete and fsynced, not renamed
    ("between_renames:5", 5),  # checkpoint.pt already moved to checkpoint.prev.pt
]


class Recorder(Callback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, view: FitView, step: int) -> None:
        self.steps.append(step)


def stats(history: History) -> list[tuple[Any, ...]]:
    """Everything in the epoch statistics but the wall time."""

    def row(e: EpochStats) -> tuple[Any, ...]:
        return (e.epoch, e.steps, e.loss, e.in_loss, e.out_loss, e.in_accuracy, e.out_on_reject)

    return [row(e) for e in history.epochs]


@pytest.fixture(scope="module")
def reference() -> tuple[dict[str, torch.Tensor], list[tuple[Any, ...]]]:
    """An uninterrupted run without checkpoints."""
    with single_thread():
        net, history = run(None)
    return snapshot(net), stats(history)


class CrashServer:
    """The child process (``_crashjob --serve``) that forks one killable run per request."""

    def __init__(self) -> None:
        pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability._crashjob", "--serve"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": pythonpath},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.ready = False  # it imports torch while this process computes the reference

    def _readline(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"the crash server did not answer within {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the crash server exited with {self.proc.wait()}")
        return line.rstrip("\n")

    def run(self, ckpt: Path, fault: str, *, resume: bool = False) -> tuple[str, list[str]]:
        """Train in a fresh process until ``fault`` kills it: (status, printed lines)."""
        assert self.proc.stdin is not None
        if not self.ready:
            assert self._readline(timeout=120) == "ready"
            self.ready = True
        self.proc.stdin.write(f"{fault}\t{ckpt}\t{int(resume)}\n")
        self.proc.stdin.flush()
        lines: list[str] = []
        while not (line := self._readline(timeout=150)).startswith("status "):
            lines.append(line)
        return line, lines

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def server() -> Iterator[CrashServer]:
    srv = CrashServer()
    yield srv
    srv.close()


def assert_killed(result: tuple[str, list[str]], fault: str) -> None:
    status, lines = result
    assert status == f"status signal {int(signal.SIGKILL)}", (status, lines)
    assert lines and lines[-1] == f"killed {fault}", lines
    assert "finished" not in lines


def resume_and_check(
    ckpt: Path,
    first: int,
    reference: tuple[dict[str, torch.Tensor], list[tuple[Any, ...]]],
) -> None:
    rec = Recorder()
    with single_thread():
        net, history = run(ckpt, resume=True, callbacks=[rec])
    assert rec.steps == list(range(first, TOTAL_STEPS + 1))
    assert same_weights(net, reference[0]), "resumed weights differ from the uninterrupted run"
    assert stats(history) == reference[1]
    assert not list(ckpt.glob(".checkpoint-*.tmp")), "temporary files of killed writers remain"


@pytest.mark.parametrize(("fault", "first"), KILLS, ids=[k for k, _ in KILLS])
def test_sigkill_then_resume_equals_uninterrupted(
    tmp_path: Path,
    fault: str,
    first: int,
    server: CrashServer,
    reference: tuple[dict[str, torch.Tensor], list[tuple[Any, ...]]],
    reliability: ReliabilityCounts,
) -> None:
    ckpt = tmp_path / "ckpt"
    result = server.run(ckpt, fault)
    reliability.fault()
    assert_killed(result, fault)
    if fault.startswith("write_partial") and first > 1:
        assert list(ckpt.glob(".checkpoint-*.tmp")), "the half-written file should be on disk"
    resume_and_check(ckpt, first, reference)


def test_killed_again_while_resuming(
    tmp_path: Path,
    server: CrashServer,
    reference: tuple[dict[str, torch.Tensor], list[tuple[Any, ...]]],
    reliability: ReliabilityCounts,
) -> None:
    """Crash, resume in a child that is killed mid-write too, then resume to the end."""
    ckpt = tmp_path / "ckpt"
    assert_killed(server.run(ckpt, "backward:2"), "backward:2")  # resumes at step 2
    reliability.fault()
    # the resumed child writes after steps 2, 3 (epoch end), 4: kill in the 3rd write
    assert_killed(server.run(ckpt, "write_partial:3", resume=True), "write_partial:3")
    reliability.fault()
    resume_and_check(ckpt, 4, reference)
