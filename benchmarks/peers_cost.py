"""What the post-hoc peers cost on MNIST, as multiples of one stage-one training epoch.

Trains a SmallCNN for one epoch on 55,000 training digits (the unit of time), then builds
every peer of ``rejectnet.peers`` on it (fit on 10,000 training digits; the OOD-tuned
ones on 1,000 held-out digits and 500 images of each OOD set) and evaluates them on the
10,000 test digits, Fashion-MNIST's 10,000 test images and 2,000 rendered letters, each
peer alone and all together with shared forward passes. Times are CPU time of this
process (``time.process_time``, one thread by default), reported as ratios to the epoch:
on a shared machine, wall-clock seconds would mostly measure the other processes. Also
prints each peer's AUROC.

    python benchmarks/peers_cost.py --data-dir ../shared/data   # pip install "rejectnet[peers]"
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from rejectnet import peers
from rejectnet.data import images_to_tensor, load_npz, rendered_letters
from rejectnet.models import SmallCNN


def _loader(x: torch.Tensor, y: torch.Tensor | None = None) -> DataLoader[tuple[torch.Tensor, ...]]:
    return DataLoader(TensorDataset(x) if y is None else TensorDataset(x, y), batch_size=512)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    m = load_npz(f"{args.data_dir}/mnist.npz", keys=("x_train", "y_train", "x_test", "y_test"))
    f = load_npz(f"{args.data_dir}/fashion_mnist.npz", keys=("x_train", "x_test"))
    x_all = images_to_tensor(m["x_train"])
    y_all = torch.from_numpy(m["y_train"].astype(np.int64))
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(y_all)))
    val, tr = perm[:5000], perm[5000:]
    train = TensorDataset(x_all[tr], y_all[tr])

    model = SmallCNN(num_classes=10, image_size=28, dropout=0.1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    t0 = time.process_time()
    model.train()
    g = torch.Generator().manual_seed(0)
    for x, y in DataLoader(train, batch_size=64, shuffle=True, generator=g):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    epoch = time.process_time() - t0
    model.eval().zero_grad(set_to_none=True)
    print(f"stage-one epoch (55,000 digits, batch 64): {epoch:.1f} s CPU, {args.threads} thread(s)")

    x_test = images_to_tensor(m["x_test"])
    y_test = torch.from_numpy(m["y_test"].astype(np.int64))
    ood = {
        "fashion": images_to_tensor(f["x_test"]),
        "letters": rendered_letters(2000, 28, np.random.default_rng(1)),
    }
    tune_id = x_all[val[:1000]]
    tune_ood = {  # disjoint from the evaluated images
        "fashion": images_to_tensor(f["x_train"][:500]),
        "letters": rendered_letters(500, 28, np.random.default_rng(2)),
    }
    fit = DataLoader(
        train, batch_size=512, shuffle=True, generator=torch.Generator().manual_seed(1)
    )
    rows: list[tuple[str, float]] = []
    t = time.process_time()
    built = peers.build_peers(model, fit, names=list(peers.PEER_NAMES))
    rows.append(("build the 6 ID-only peers (one fit pass)", time.process_time() - t))
    for name in peers.TUNED_PEER_NAMES:
        t = time.process_time()
        built |= peers.build_peers(model, fit, names=[name], tune_id=tune_id, tune_ood=tune_ood)
        rows.append((f"build {name}", time.process_time() - t))
    ood_loaders = {k: _loader(v) for k, v in ood.items()}
    for name, peer in built.items():
        t = time.process_time()
        (r,) = peers.evaluate_peers({name: peer}, _loader(x_test, y_test), ood_loaders)
        rows.append((f"evaluate {name} alone", time.process_time() - t))
        aurocs = "  ".join(f"{k} {100 * v.mean['auroc']:.2f}" for k, v in r.ood.items())
        print(f"  {r.score[:62]:62s} AUROC {aurocs}")
    t = time.process_time()
    peers.evaluate_peers(built, _loader(x_test, y_test), ood_loaders)
    shared = time.process_time() - t
    rows.append(("evaluate all 8 together (shared passes)", shared))
    total = sum(v for k, v in rows if k.startswith("build")) + shared
    rows.append(("total: builds + evaluation together", total))
    print("| step | CPU seconds | stage-one epochs |\n|---|---|---|")
    for k, v in rows:
        print(f"| {k} | {v:.1f} | {v / epoch:.2f} |")


if __name__ == "__main__":
    main()
