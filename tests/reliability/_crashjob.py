"""A small deterministic fine-tuning run that the fault-injection tests kill on purpose.

The tests import it for the in-process parts (the uninterrupted reference run, the
resumed runs) and start it as a child process, ``python -m tests.reliability._crashjob
--serve`` from the repository root. For each request (a fault, a checkpoint folder) that
child forks a fresh process which trains until it sends itself ``SIGKILL``; forking a
process that has already imported torch keeps each case at a fraction of a second.
``python -m tests.reliability._crashjob CKPT_DIR [--resume]`` with
``REJECTNET_FAULT=kind:n`` runs one case directly. The faults (``kind:n``):

* ``step:n``: right after optimizer step ``n`` (before that step's checkpoint);
* ``forward:n`` / ``backward:n``: inside the forward / backward pass of training step ``n``;
* ``epoch_end:n``: right after the checkpoint that ends epoch ``n``;
* ``write_partial:n``: in the ``n``-th checkpoint write, after half of the payload has
  reached the temporary file;
* ``before_rename:n``: in the ``n``-th write, after ``fsync``, before any rename;
* ``between_renames:n``: in the ``n``-th write, after ``checkpoint.pt`` became
  ``checkpoint.prev.pt`` and before the new file took its place.

Every run uses one CPU thread, so the child and the test process compute bit-identical
floating-point results. The child prints one line per step and ``killed <fault>`` just
before it dies, so the test can check that the fault fired where it was meant to.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch.utils.data import DataLoader

from rejectnet import RejectHead, SelfSupervisedOODFinetuner
from rejectnet.finetune import Callback, FitView, History
from rejectnet.finetune import checkpoint as checkpoint_module
from tests.finetune.helpers import DropoutCNN, in_distribution, outliers

FAULT_ENV = "REJECTNET_FAULT"
EPOCHS = 2
STEPS_PER_EPOCH = 3
TOTAL_STEPS = EPOCHS * STEPS_PER_EPOCH
_BATCH = 16


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread (bit-identical results across processes), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_net() -> RejectHead:
    """The tiny CNN (batch norm and dropout) wrapped with k=2 reject units."""
    torch.manual_seed(0)
    return RejectHead.wrap(DropoutCNN(), k=2)


def build_loaders() -> tuple[DataLoader[Any], DataLoader[Any]]:
    """Shuffled in-distribution (3 batches of 16) and outlier loaders."""
    return (
        DataLoader(in_distribution(n=STEPS_PER_EPOCH * _BATCH), batch_size=_BATCH, shuffle=True),
        DataLoader(outliers(n=100), batch_size=7, shuffle=True),
    )


def run(
    checkpoint_dir: Path | None,
    *,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    net: RejectHead | None = None,
) -> tuple[RejectHead, History]:
    """Fine-tune from scratch (or resume); checkpoints after every step when a dir is given."""
    net = net if net is not None else build_net()
    ft = SelfSupervisedOODFinetuner(
        net,
        epochs=EPOCHS,
        lr=0.05,
        seed=7,
        progress=False,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=1 if checkpoint_dir is not None else None,
        callbacks=callbacks,
    )
    history = ft.fit(*build_loaders(), resume=resume)
    return net, history


# ---------------------------------------------------------------- the child process
def _die(fault: str) -> None:
    print(f"killed {fault}", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


class _Progress(Callback):
    """Prints each step; kills the process at a step or epoch end if asked to."""

    def __init__(self, kind: str, n: int) -> None:
        self.kind, self.n = kind, n

    def on_step_end(self, view: FitView, step: int) -> None:
        print(f"step {step}", flush=True)
        if self.kind == "step" and step == self.n:
            _die(f"step:{step}")

    def on_epoch_end(self, view: FitView, stats: Any) -> None:
        if self.kind == "epoch_end" and stats.epoch == self.n:
            _die(f"epoch_end:{stats.epoch}")


class _HalfWriter:
    """A file whose third write (the checkpoint payload) stops half-way and kills us."""

    def __init__(self, f: Any, fault: str) -> None:
        self.f, self.fault, self.calls = f, fault, 0

    def __enter__(self) -> _HalfWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()

    def write(self, data: bytes) -> int:
        self.calls += 1
        if self.calls < 3:
            return int(self.f.write(data))
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        os.fsync(self.f.fileno())
        _die(self.fault)
        return 0  # pragma: no cover

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)


class _FaultyOS:
    """Stands in for ``os`` inside rejectnet.finetune.checkpoint only."""

    def __init__(self, kind: str, n: int) -> None:
        self.kind, self.n, self.writes = kind, n, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def fdopen(self, fd: int, mode: str) -> Any:
        self.writes += 1
        f = os.fdopen(fd, mode)
        if self.kind == "write_partial" and self.writes == self.n:
            return _HalfWriter(f, f"write_partial:{self.n}")
        return f

    def replace(self, src: Any, dst: Any) -> None:
        if self.writes == self.n:
            if self.kind == "before_rename":
                _die(f"before_rename:{self.n}")
            if self.kind == "between_renames" and str(src).endswith(".tmp"):
                _die(f"between_renames:{self.n}")
        os.replace(src, dst)


def _install(net: RejectHead, kind: str, n: int) -> None:
    if kind in ("write_partial", "before_rename", "between_renames"):
        checkpoint_module.os = _FaultyOS(kind, n)  # type: ignore[assignment]
    elif kind in ("forward", "backward"):
        calls = [0]

        def hook(*_: Any) -> None:
            if net.training:
                calls[0] += 1
                if calls[0] == n:
                    _die(f"{kind}:{n}")

        if kind == "forward":
            net.model.register_forward_pre_hook(hook)
        else:
            net.head.register_full_backward_hook(hook)


def _train_with_fault(ckpt: Path, fault: str, resume: bool) -> None:
    kind, _, n = fault.partition(":")
    net = build_net()
    _install(net, kind, int(n or 0))
    with single_thread():
        run(ckpt, resume=resume, callbacks=[_Progress(kind, int(n or 0))], net=net)
    print("finished", flush=True)


def serve() -> NoReturn:
    """Answer requests ``<fault>\\t<ckpt_dir>\\t<0|1 resume>`` from stdin, one per line.

    Each request runs in a forked process (this one has imported torch and rejectnet
    but computed nothing, so forking is safe and each run starts in milliseconds). The
    run prints its progress; when it has ended this process prints ``status signal <n>``
    or ``status exit <n>``.
    """
    import torch._dynamo  # noqa: F401  (imported lazily by the first optimizer otherwise)

    print("ready", flush=True)
    for line in sys.stdin:
        fault, ckpt, resume = line.rstrip("\n").split("\t")
        pid = os.fork()
        if pid == 0:  # the child: train until the fault kills it
            code = 1
            try:
                signal.alarm(120)  # a hung run dies instead of hanging the test
                _train_with_fault(Path(ckpt), fault, resume == "1")
                code = 0
            finally:
                sys.stdout.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            print(f"status signal {os.WTERMSIG(status)}", flush=True)
        else:
            print(f"status exit {os.WEXITSTATUS(status)}", flush=True)
    sys.stdout.flush()
    os._exit(0)  # skip the interpreter's slow teardown of torch


def main(argv: Sequence[str]) -> int:
    """``--serve`` (see :func:`serve`), or ``CKPT_DIR [--resume]`` with ``$REJECTNET_FAULT``."""
    if argv and argv[0] == "--serve":
        serve()
    _train_with_fault(
        Path(argv[0]), os.environ.get(FAULT_ENV, "none:0"), len(argv) > 1 and argv[1] == "--resume"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
