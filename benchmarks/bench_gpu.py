"""Stage-two training throughput for WRN-40-2 on 32x32 inputs, against a plain CE step.

``stage two`` is :class:`rejectnet.SelfSupervisedOODFinetuner` itself (k = 5, lambda = 5,
outlier batch 5x the in-distribution batch, SGD with Nesterov momentum, cosine schedule):
each step concatenates a CPU in-batch of B images with 5B outliers, copies it to the
device, runs one forward over the C + k outputs, computes the pseudo-labels and the two
cross-entropies, and steps. ``plain CE`` is a hand-written loop over the same
concatenated 6B-image batch on the unwrapped WRN-40-2: copy, forward, one cross-entropy,
backward, the same SGD step. The ratio stage two / plain CE is the cost of everything
rejectnet adds (the reject units, the pseudo-labels, the statistics, the loop).

On CUDA (B = 128, so 768 images per step) it compares float32, bfloat16 autocast, and
bfloat16 with ``channels_last``; both loops copy from pinned memory with
``non_blocking=True``. Without CUDA it runs on the CPU with B = 4 and a few steps only.
Throughput is measured between two synchronisations after a warm-up.

Run: ``python benchmarks/bench_gpu.py [--batch B] [--steps N] [--warmup W]``
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import torch
from torch import nn

from rejectnet import RejectHead, SelfSupervisedOODFinetuner
from rejectnet.finetune import Callback, FitView
from rejectnet.finetune.options import AmpMode
from rejectnet.models import WideResNet

__all__ = ["main"]

RATIO = 5
K = 5


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Timer(Callback):
    def __init__(self, device: torch.device, start: int, stop: int) -> None:
        self.device, self.start, self.stop = device, start, stop
        self.t0 = self.t1 = 0.0

    def on_step_end(self, view: FitView, step: int) -> None:
        if step == self.start:
            _sync(self.device)
            self.t0 = time.perf_counter()
        elif step == self.stop:
            _sync(self.device)
            self.t1 = time.perf_counter()


def _data(
    batch: int, n_steps: int, pin: bool
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    ins = []
    outs = []
    for _ in range(n_steps):
        x = torch.randn(batch, 3, 32, 32, generator=g)
        y = torch.randint(0, 10, (batch,), generator=g)
        o = torch.randn(RATIO * batch, 3, 32, 32, generator=g)
        if pin:
            x, y, o = x.pin_memory(), y.pin_memory(), o.pin_memory()
        ins.append((x, y))
        outs.append(o)
    return ins, outs


def stage_two(
    model: nn.Module,
    device: torch.device,
    batch: int,
    warmup: int,
    steps: int,
    amp: AmpMode,
    channels_last: bool,
) -> float:
    """Images per second of SelfSupervisedOODFinetuner's steps."""
    ins, outs = _data(batch, warmup + steps, pin=device.type == "cuda")
    net = RejectHead.wrap(copy.deepcopy(model), k=K).to(device)
    timer = _Timer(device, warmup, warmup + steps)
    ft = SelfSupervisedOODFinetuner(
        net,
        epochs=1,
        lam=5.0,
        outlier_ratio=RATIO,
        device=device,
        amp=amp,
        channels_last=channels_last,
        progress=False,
        callbacks=[timer],
    )
    ft.fit(ins, outs)
    return (1 + RATIO) * batch * steps / (timer.t1 - timer.t0)


def plain_ce(
    model: nn.Module,
    device: torch.device,
    batch: int,
    warmup: int,
    steps: int,
    amp: AmpMode,
    channels_last: bool,
) -> float:
    """Images per second of a hand-written CE step on the same concatenated batch."""
    ins, outs = _data(batch, warmup + steps, pin=False)
    pin = device.type == "cuda"
    xs = []
    ys = []
    for (x, y), o in zip(ins, outs, strict=True):
        x_all = torch.cat([x, o])
        y_all = torch.cat([y, torch.randint(0, 10, (o.shape[0],))])
        xs.append(x_all.pin_memory() if pin else x_all)
        ys.append(y_all.pin_memory() if pin else y_all)
    m = copy.deepcopy(model).to(device).train()
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True)
    loss_fn = nn.CrossEntropyLoss()
    ctx: Any = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if amp
        else torch.autocast(device_type=device.type, enabled=False)
    )
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        x = xs[i].to(device, non_blocking=pin)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = ys[i].to(device, non_blocking=pin)
        with ctx:
            loss = loss_fn(m(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return (1 + RATIO) * batch * steps / (time.perf_counter() - t0)


def main() -> None:
    """Print one line per precision / memory-format variant."""
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128 if cuda else 4, help="in-batch B")
    parser.add_argument("--steps", type=int, default=30 if cuda else 3, help="timed steps")
    parser.add_argument("--warmup", type=int, default=10 if cuda else 1, help="warm-up steps")
    args = parser.parse_args()
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
        variants: list[tuple[str, AmpMode, bool]] = [
            ("float32", False, False),
            ("bf16 autocast", "bf16", False),
            ("bf16 + channels_last", "bf16", True),
        ]
    else:
        name = f"CPU, {torch.get_num_threads()} thread(s)"
        variants = [("float32", False, False)]
    torch.manual_seed(0)
    model = WideResNet(depth=40, widen_factor=2, num_classes=10, dropout=0.3)
    print(
        f"WRN-40-2, 32x32, in-batch {args.batch} + outliers {RATIO * args.batch} = "
        f"{(1 + RATIO) * args.batch} images/step, {args.warmup} warm-up + {args.steps} timed "
        f"steps, torch {torch.__version__}, {name}"
    )
    print(f"{'variant':<24}{'stage two img/s':>17}{'plain CE img/s':>16}{'ratio':>8}")
    for label, amp, cl in variants:
        plain = plain_ce(model, device, args.batch, args.warmup, args.steps, amp, cl)
        ours = stage_two(model, device, args.batch, args.warmup, args.steps, amp, cl)
        print(f"{label:<24}{ours:>17.1f}{plain:>16.1f}{ours / plain:>8.3f}")


if __name__ == "__main__":
    main()
