"""Wrap torchvision models and your own model (Hugging Face-style outputs, ``head=``).

Part 1 shows which final layer ``RejectHead.wrap`` finds in a few torchvision
architectures. Part 2 wraps a hand-written model whose forward returns a Hugging
Face-style output object, once with the head found automatically and once where it has
to be named with ``head=``. Part 3 trains a torchvision ResNet-18 (random
weights) as a plain classifier, wraps it, runs the self-supervised stage two and reports
the AUROC.

    python examples/wrap_torchvision.py --smoke                    # synthetic data, seconds
    python examples/wrap_torchvision.py --data-dir ../shared/data  # MNIST, a few minutes
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import rejectnet
from rejectnet.data import images_to_tensor, load_npz


# --8<-- [start:own-model]
@dataclass
class ClassifierOutput:
    """What a Hugging Face model returns: an object with ``.logits`` (a dict works too)."""

    logits: torch.Tensor
    embedding: torch.Tensor


class MyClassifier(nn.Module):
    """A hand-written model: a backbone, a classification layer and an extra projection."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 64), nn.ReLU())
        self.out = nn.Linear(64, num_classes)  # the classification layer
        self.project = nn.Linear(64, 16)  # an embedding head, registered last

    def forward(self, x: torch.Tensor) -> ClassifierOutput:
        h = self.backbone(x)
        return ClassifierOutput(logits=self.out(h), embedding=self.project(h))


# --8<-- [end:own-model]


def synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tiny stand-in data: 10 classes of horizontal bands, noise outliers, vertical bands."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = 0.2 * torch.rand(n, 3, 32, 32, generator=g)
    for c in range(10):
        x[y == c, :, 3 * c : 3 * c + 3, :] += 0.8
    outliers = torch.rand(5 * n, 3, 32, 32, generator=g)
    ood = 0.2 * torch.rand(n, 3, 32, 32, generator=g)
    ood[:, :, :, 8:14] += 0.8
    return x, y, outliers, ood


def to_rgb32(x: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) digits -> float (N, 3, 32, 32) in [0, 1]."""
    return F.pad(images_to_tensor(x), (2, 2, 2, 2)).repeat(1, 3, 1, 1)


def real(data_dir: Path, n: int, seed: int) -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng(seed)
    mnist = load_npz(data_dir / "mnist.npz", keys=("x_train", "y_train", "x_test", "y_test"))
    photos = load_npz(data_dir / "photo_patches.npz", keys=("x_train",))["x_train"]
    fashion = load_npz(data_dir / "fashion_mnist.npz", keys=("x_test",))["x_test"]
    idx = rng.choice(len(mnist["x_train"]), size=n, replace=False)
    x, y = to_rgb32(mnist["x_train"][idx]), torch.from_numpy(mnist["y_train"][idx]).long()
    outliers = to_rgb32(photos[rng.choice(len(photos), size=2 * n, replace=False)])
    x_test, y_test = (
        to_rgb32(mnist["x_test"][: n // 2]),
        torch.from_numpy(mnist["y_test"][: n // 2]),
    )
    return x, y, outliers, x_test, y_test.long(), to_rgb32(fashion[: n // 2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic data, seconds")
    parser.add_argument("--data-dir", type=Path, help="folder with mnist.npz etc.")
    parser.add_argument("--out", type=Path, help="output folder (default: a temp folder)")
    parser.add_argument("--n", type=int, default=4000, help="training digits (full run)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each stage")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.smoke and args.data_dir is None:
        parser.error("pass --data-dir (e.g. ../shared/data) or --smoke")
    out = args.out or Path(tempfile.mkdtemp(prefix="rejectnet-torchvision-"))
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()

    # Part 1: the head is found automatically in torchvision models.
    # --8<-- [start:torchvision]
    for name in ("resnet18", "mobilenet_v3_small", "efficientnet_b0", "densenet121"):
        model = getattr(torchvision.models, name)(num_classes=10)  # random weights
        net = rejectnet.RejectHead.wrap(model, k=5)
        logits = net.eval()(torch.rand(2, 3, 32, 32))
        print(f"{name}: head {net.head_path!r}, logits {tuple(logits.shape)}")  # (2, 15)
    # --8<-- [end:torchvision]

    # Part 2: your own model, with a Hugging Face-style output.
    # --8<-- [start:head]
    mine = MyClassifier()
    try:
        rejectnet.RejectHead.wrap(mine, k=5)(torch.rand(2, 3, 32, 32))
    except RuntimeError as err:  # the last Linear registered is `project`, not the head
        print("automatic head search picked the wrong layer:", str(err)[:60], "...")
    net = rejectnet.RejectHead.wrap(mine, k=5, head="out")  # name the layer instead
    logits = net(torch.rand(2, 3, 32, 32))  # RejectHead reads `.logits` from the output
    print(f"MyClassifier: head {net.head_path!r}, logits {tuple(logits.shape)}")
    # --8<-- [end:head]

    # Part 3: train, wrap and fine-tune a torchvision model.
    if args.smoke:
        x, y, outliers, ood_test = synthetic(64, args.seed)
        x_test, y_test = synthetic(64, args.seed + 1)[:2]
        batch, epochs = 16, 1
    else:
        x, y, outliers, x_test, y_test, ood_test = real(args.data_dir, args.n, args.seed)
        batch, epochs = 64, args.epochs
    n_val = len(x) // 5
    in_loader = DataLoader(TensorDataset(x[n_val:], y[n_val:]), batch_size=batch, shuffle=True)
    out_loader = DataLoader(TensorDataset(outliers), batch_size=5 * batch, shuffle=True)

    model = torchvision.models.resnet18(num_classes=10)
    rejectnet.train_classifier(model, in_loader, epochs=epochs, lr=0.05, progress=False)
    net = rejectnet.RejectHead.wrap(model, k=5)
    rejectnet.SelfSupervisedOODFinetuner(net, epochs=epochs, lr=0.01, progress=False).fit(
        in_loader, out_loader
    )
    net.eval().calibrate([x[:n_val]], coverage=0.95)
    accuracy = float((net.predict(x_test).classes == y_test).float().mean())
    auroc = rejectnet.metrics.auroc(net.ood_score(x_test), net.ood_score(ood_test))
    note = " (smoke data: the numbers mean nothing)" if args.smoke else ""
    print(f"resnet18: test accuracy {100 * accuracy:.2f}%{note}")
    print(f"resnet18: AUROC (OOD test set): {100 * auroc:.2f}%")
    path = rejectnet.save(net, out / "resnet18-reject.safetensors")
    print(f"saved {path} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
