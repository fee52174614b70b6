"""Inference latency of a wrapped model against the original, on the CPU.

``RejectHead.wrap(model, k=5)`` adds k reject units beside the final layer and
concatenates the two outputs; this measures what that costs at inference time. For the
paper's MNIST network (``rejectnet.models.SmallCNN``, 1x28x28) and a timm ResNet-18
(random weights, 10 classes, 3x32x32), at batch sizes 1 and 64, it times

* ``original``: ``model(x)``, the C class logits;
* ``wrapped``: ``net(x)``, the C + k logits (the target is ``wrapped / original <= 1.02``);
* ``deployable``: ``net.deployable()(x)``, labels, OOD score and decision (for reference:
  it also computes the score and the threshold test);
* ``copy``: a deep copy of the original model, as a control: ``copy/orig`` shows how far
  two identical models differ on this machine (memory placement, noise).

A last line times the widened layer alone, ``RejectLinear`` against the ``nn.Linear``
it wraps, at batch size 1: the fixed cost the wrapping adds per call.

The four run in interleaved blocks (original, copy, wrapped, deployable; then copy,
wrapped, deployable, original; ...), so that slow drift of the machine affects all
alike. Each block calls one model six times in a row and times the last five, so that
every timing sees that model's weights in the caches, as a deployed model would (the
four hold separate copies of the weights; timing single calls in turn would measure
cache misses instead). All under ``torch.inference_mode()``, after a warm-up; the table gives
the median of each and the ratio of the medians.

Run: ``python benchmarks/bench_inference.py [--threads N] [--seconds S]``
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from rejectnet import RejectHead, RejectLinear
from rejectnet.models import SmallCNN

__all__ = ["main"]

BLOCK = 6
"""Calls per model in a row: one to warm the caches, then BLOCK - 1 timed."""


def _timm_resnet18() -> nn.Module | None:
    try:
        import timm
    except ImportError:
        return None
    model: nn.Module = timm.create_model("resnet18", pretrained=False, num_classes=10)
    return model


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(
    model: nn.Module, x: torch.Tensor, seconds: float, block: int = BLOCK
) -> tuple[list[float], int]:
    """Median seconds of original, copy, wrapped and deployable; and the rounds run."""
    model = model.eval()
    twin = copy.deepcopy(model).eval()
    net = RejectHead.wrap(copy.deepcopy(model), k=5).eval()
    net.set_threshold(0.5)
    dep = net.deployable()
    fns = [lambda: model(x), lambda: twin(x), lambda: net(x), lambda: dep(x)]
    n = len(fns)
    times: list[list[float]] = [[] for _ in fns]
    with torch.inference_mode():
        assert torch.equal(net(x)[:, :10], model(x)), "class logits must be bit-exact"
        for fn in fns * 5:
            fn()
        one = sum(_time(fn) for fn in fns)
        rounds = int(min(max(seconds / max(one * block, 1e-9), 10), 400))
        for r in range(rounds):
            for j in range(n):
                i = (r + j) % n
                fns[i]()  # the block's first call warms the caches for this model
                times[i].extend(_time(fns[i]) for _ in range(block - 1))
    return [statistics.median(t) for t in times], rounds


def bench_head(seconds: float, block: int = BLOCK) -> tuple[float, float]:
    """Median seconds of nn.Linear(128, 10) and of its RejectLinear(k=5), batch 1."""
    base = nn.Linear(128, 10)
    layer = RejectLinear(base, 5)
    x = torch.randn(1, 128)
    fns = [lambda: base(x), lambda: layer(x)]
    times: list[list[float]] = [[], []]
    with torch.inference_mode():
        for r in range(int(seconds * 2e4 / block)):
            for i in (r % 2, (r + 1) % 2):
                fns[i]()
                times[i].extend(_time(fns[i]) for _ in range(block - 1))
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    """Print one line per model and batch size."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--seconds", type=float, default=4.0, help="time budget per row")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} thread(s), CPU, torch.inference_mode, k=5"
    )
    print(
        f"{'model':<22}{'batch':>6}{'rounds':>7}{'original ms':>12}{'wrapped ms':>11}"
        f"{'wrapped/orig':>13}{'copy/orig':>10}{'deployable/orig':>16}"
    )
    torch.manual_seed(0)
    cases: list[tuple[str, nn.Module | None, tuple[int, ...]]] = [
        ("SmallCNN 1x28x28", SmallCNN(num_classes=10), (1, 28, 28)),
        ("timm resnet18 3x32x32", _timm_resnet18(), (3, 32, 32)),
    ]
    worst = 0.0
    for name, model, shape in cases:
        if model is None:
            print(f"{name:<22} skipped: timm is not installed")
            continue
        for batch in (1, 64):
            x = torch.randn(batch, *shape)
            (orig, twin, wrapped, deploy), rounds = bench(model, x, args.seconds)
            worst = max(worst, wrapped / orig)
            print(
                f"{name:<22}{batch:>6}{rounds:>7}{1e3 * orig:>12.3f}{1e3 * wrapped:>11.3f}"
                f"{wrapped / orig:>13.3f}{twin / orig:>10.3f}{deploy / orig:>16.3f}"
            )
    base_s, layer_s = bench_head(args.seconds)
    print(
        f"head alone, batch 1: nn.Linear(128, 10) {1e6 * base_s:.1f} us, its RejectLinear "
        f"(k=5) {1e6 * layer_s:.1f} us: {1e6 * (layer_s - base_s):+.1f} us per call"
    )
    verdict = "meets" if worst <= 1.02 else "misses"
    print(f"worst wrapped/original ratio {worst:.3f}: {verdict} the target of <= 1.02")


if __name__ == "__main__":
    main()
