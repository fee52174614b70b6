"""Cost of a rejectnet stage-two step relative to a plain cross-entropy step.

Both steps run the same model on the same concatenated batch ``[x_in; x_out]`` (in-batch
B, outliers 5B) with the same SGD optimizer; they differ only in the objective:

* stage two: the fine-tuner's own step (:func:`rejectnet.finetune.step.forward_and_loss`
  with :class:`~rejectnet.losses.SelfSupervisedRejectLoss`): ``CE(in, y) + lam *
  CE(out, pseudo_labels(out))`` (Algorithm 1, pseudo-labels from the same forward);
* plain: ``CE(all, fixed labels over C + k)``.

The two are timed interleaved (ABAB...) and the ratio of medians is printed, so machine
speed cancels out. Target: at most 1.05. Usage::

    python benchmarks/bench_step.py [--reps 30] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from rejectnet import RejectHead
from rejectnet.finetune.step import StepBatch, forward_and_loss
from rejectnet.losses import SelfSupervisedRejectLoss
from rejectnet.models import SmallCNN


def _timed(fn: Callable[[], None]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench(name: str, model: nn.Module, shape: tuple[int, ...], batch: int, reps: int) -> float:
    torch.manual_seed(0)
    net = RejectHead.wrap(model, k=5).train()
    c, k = net.num_classes, net.k
    x = torch.randn(6 * batch, *shape)
    y = torch.randint(0, c, (batch,))
    y_all = torch.randint(0, c + k, (6 * batch,))
    opt = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9)
    objective = SelfSupervisedRejectLoss(c, 5.0, generator=torch.Generator().manual_seed(0))
    step = StepBatch(x[:batch], y, x[batch:], 5 * batch)
    cpu = torch.device("cpu")

    def stage_two() -> None:
        loss = forward_and_loss(net, objective, step, device=cpu, amp=False).terms.loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def plain() -> None:
        loss = F.cross_entropy(net(x), y_all)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        stage_two()
        plain()
    a, b = [], []
    for _ in range(reps):
        a.append(_timed(stage_two))
        b.append(_timed(plain))
    ratio = statistics.median(a) / statistics.median(b)
    print(
        f"{name:<28} batch {batch}+{5 * batch}  stage-two {1000 * statistics.median(a):7.1f} ms"
        f"  plain CE {1000 * statistics.median(b):7.1f} ms  ratio {ratio:.3f}"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, {args.reps} reps")
    bench("MNIST CNN (28x28)", SmallCNN(10, image_size=28), (1, 28, 28), 64, args.reps)
    import timm

    resnet = timm.create_model("resnet18", num_classes=10)
    bench("timm ResNet-18 (32x32)", resnet, (3, 32, 32), 16, args.reps)


if __name__ == "__main__":
    main()
