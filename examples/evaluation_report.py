"""Compare OOD detectors on several OOD sets and a mixed one, with tables and plots.

Trains one classifier (stage one) and, from the same weights, an Outlier Exposure model
and a rejectnet model; then evaluates max-softmax and energy on the plain classifier,
max-softmax on OE, and two reject scores on rejectnet with ``rejectnet.evaluate``: equal
numbers of in- and out-of-distribution samples, several random subsamples, every OOD set
plus an equal mix of all of them. Writes ``report.md``, ``results.json`` and four PNG
plots to ``--out`` (or a temporary folder).

    python examples/evaluation_report.py --smoke                    # synthetic data, seconds
    python examples/evaluation_report.py --data-dir ../shared/data  # MNIST, a few minutes

The full run's OOD test sets: Fashion-MNIST, letters rendered with Pillow's font, and
uniform noise; its training outliers come from ``photo_patches.npz``, disjoint from all
three.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

import rejectnet
from rejectnet.data import images_to_tensor, load_npz, rendered_letters
from rejectnet.evaluation import compute_logits
from rejectnet.models import SmallCNN


def synthetic(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Tiny stand-in data: 10 classes of horizontal bands; noise outliers; two OOD sets."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (2 * n,), generator=g)
    x = 0.2 * torch.rand(2 * n, 1, 28, 28, generator=g)
    for c in range(10):
        x[y == c, :, 2 + 2 * c : 5 + 2 * c, 4:24] += 0.8
    bands = 0.2 * torch.rand(n, 1, 28, 28, generator=g)
    bands[:, :, 4:24, 10:16] += 0.8
    return {
        "x": x[:n].clamp(0, 1),
        "y": y[:n],
        "x_test": x[n:].clamp(0, 1),
        "y_test": y[n:],
        "outliers": torch.rand(3 * n, 1, 28, 28, generator=g),
        "vertical_bands": bands.clamp(0, 1),
        "blobs": torch.rand(n, 1, 7, 7, generator=g)
        .repeat_interleave(4, 2)
        .repeat_interleave(4, 3),
    }


def real(data_dir: Path, n: int, n_test: int, seed: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    mnist = load_npz(data_dir / "mnist.npz", keys=("x_train", "y_train", "x_test", "y_test"))
    photos = load_npz(data_dir / "photo_patches.npz", keys=("x_train",))["x_train"]
    fashion = load_npz(data_dir / "fashion_mnist.npz", keys=("x_test",))["x_test"]
    idx = rng.choice(len(mnist["x_train"]), size=n, replace=False)
    test = rng.choice(len(mnist["x_test"]), size=n_test, replace=False)
    return {
        "x": images_to_tensor(mnist["x_train"][idx]),
        "y": torch.from_numpy(mnist["y_train"][idx]),
        "x_test": images_to_tensor(mnist["x_test"][test]),
        "y_test": torch.from_numpy(mnist["y_test"][test]),
        "outliers": images_to_tensor(photos[rng.choice(len(photos), size=n, replace=False)]),
        "fashion_mnist": images_to_tensor(fashion[rng.choice(len(fashion), n_test, replace=False)]),
        "letters": rendered_letters(n_test, 28, rng),
        "noise": torch.from_numpy(rng.random((n_test, 1, 28, 28), dtype=np.float32)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic data, seconds")
    parser.add_argument("--data-dir", type=Path, help="folder with mnist.npz etc.")
    parser.add_argument("--out", type=Path, help="output folder (default: a temp folder)")
    parser.add_argument("--n", type=int, default=6000, help="training digits (full run)")
    parser.add_argument("--n-test", type=int, default=2000, help="test samples per set")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each stage")
    parser.add_argument("--runs", type=int, default=5, help="random equal-size subsamples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.smoke and args.data_dir is None:
        parser.error("pass --data-dir (e.g. ../shared/data) or --smoke")
    out = args.out or Path(tempfile.mkdtemp(prefix="rejectnet-report-"))
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()

    if args.smoke:
        data = synthetic(96, args.seed)
        ood_names = ["vertical_bands", "blobs"]
        model = SmallCNN(num_classes=10, image_size=28, channels=(8, 16), hidden=32)
        batch, epochs, runs = 16, 1, 2
    else:
        data = real(args.data_dir, args.n, args.n_test, args.seed)
        ood_names = ["fashion_mnist", "letters", "noise"]
        model = SmallCNN(num_classes=10, image_size=28)
        batch, epochs, runs = 64, args.epochs, args.runs
    x, y = data["x"], data["y"].long()
    n_val = len(x) // 6
    in_loader = DataLoader(TensorDataset(x[n_val:], y[n_val:]), batch_size=batch, shuffle=True)
    out_loader = DataLoader(TensorDataset(data["outliers"]), batch_size=5 * batch, shuffle=True)

    rejectnet.train_classifier(model, in_loader, epochs=epochs, lr=0.05, progress=False)
    oe = copy.deepcopy(model)
    rejectnet.OutlierExposureFinetuner(oe, epochs=epochs, lr=0.01, progress=False).fit(
        in_loader, out_loader
    )
    net = rejectnet.RejectHead.wrap(model, k=5)  # a copy: `model` stays the plain baseline
    rejectnet.SelfSupervisedOODFinetuner(net, epochs=epochs, lr=0.01, progress=False).fit(
        in_loader, out_loader
    )
    net.eval().calibrate([x[:n_val]], coverage=0.95)

    # --8<-- [start:evaluate]
    id_test = DataLoader(TensorDataset(data["x_test"], data["y_test"].long()), batch_size=500)
    ood = {name: DataLoader(TensorDataset(data[name]), batch_size=500) for name in ood_names}
    kw = dict(n_runs=runs, seed=args.seed)  # same subsamples for every method
    reports = [
        rejectnet.evaluate(model.eval(), id_test, ood, "msp", name="msp", **kw),
        rejectnet.evaluate(model.eval(), id_test, ood, "energy", name="energy", **kw),
        rejectnet.evaluate(oe.eval(), id_test, ood, "msp", name="oe", **kw),
    ]
    # Several scores of one model: compute its logits once, score them many times.
    id_logits = compute_logits(net, id_test)
    ood_logits = {name: compute_logits(net, loader) for name, loader in ood.items()}
    for score in ("sum_reject", "max_reject"):
        reports.append(
            rejectnet.evaluate(net, id_logits, ood_logits, score, name=f"rejectnet/{score}", **kw)
        )
    # --8<-- [end:evaluate]

    # --8<-- [start:write]
    tables = "\n\n".join(r.to_markdown() for r in reports)
    (out / "report.md").write_text(f"# OOD detection ({runs} runs, mean ± std, %)\n\n{tables}\n")
    (out / "results.json").write_text(json.dumps([r.to_dict() for r in reports], indent=2))
    plots = reports[0].plot(out, others=reports[1:])  # needs matplotlib
    # --8<-- [end:write]

    note = " (smoke data: the numbers mean nothing)" if args.smoke else ""
    print(f"AUROC on the mixed OOD set, %{note}:")
    for r in reports:
        mixed = r.ood["mixed"]
        acc = f"{100 * r.id_accuracy:.2f}" if r.id_accuracy is not None else "-"
        auroc, std = 100 * mixed.mean["auroc"], 100 * mixed.std["auroc"]
        fpr = 100 * mixed.mean["fpr95"]
        print(f"  {r.name:<22} AUROC {auroc:6.2f} ± {std:.2f}  FPR@95%TPR {fpr:6.2f}  ID acc {acc}")
    print(f"wrote report.md, results.json and {len(plots)} plots to {out}")
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
