"""Dev-set ablation of the outlier signal (issue 10): each lever alone, then combined.

Stage one (the paper's SmallCNN, plain cross-entropy on MNIST training digits minus 5,000
held out) is trained ONCE and cached with safetensors; every stage-two variant starts
from those weights and runs the same short custom loop on the public losses (like the
quick preset: 300 steps of 64 digits + 320 outliers, SGD 0.01 cosine, momentum 0.9,
nesterov, weight decay 5e-4). Everything is measured on DEV data only:

* ID: the 5,000 held-out training digits (accuracy; the in-distribution side of AUROC);
* near OOD: ``rejectnet.data.letter_dev_sets`` (letters, letters-clean, letters-thick,
  letters-fonts);
* far OOD: Fashion-MNIST (``x_test``) and 5,000 held-out training outliers (photo patches
  never used in training).

Variants ending in ``-k<K>`` use K reject classes instead of 5.

The step cost is the ratio of medians of the variant's full step to a plain
cross-entropy step on the same concatenated batch, timed interleaved. Usage::

    python benchmarks/ablate_outliers.py --data-dir ../shared/data [--variants a,b] \
        [--seed 0] [--out /tmp/ablation.jsonl]

Prints one line per variant (AUROC % / FPR@95%TPR % per set) and appends JSON lines.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from rejectnet.data import images_to_tensor, letter_dev_sets, load_npz
from rejectnet.head import RejectHead
from rejectnet.losses import CrossEntropyLoss, OutlierExposureLoss, SelfSupervisedRejectLoss
from rejectnet.metrics import auroc, fpr_at_tpr
from rejectnet.models import SmallCNN
from rejectnet.outliers import (
    Blend,
    ClusterLabeler,
    ComposedSignal,
    Jigsaw,
    Overlay,
    PoolRows,
    Rotate,
    Stitch,
    VirtualOutliers,
    Warp,
    recommended,
)
from rejectnet.report.tables import markdown_table as escaped_table
from rejectnet.scores import msp, sum_reject

ROT_WARP = [(Rotate(), 0.5), (Warp(), 0.5)]
ROT_WARP_HALF = [(Rotate(), 0.25), (Warp(), 0.25)]
SYNTH = [(Jigsaw(2), 0.25), (Stitch(), 0.25), (Overlay(), 0.25), (Rotate(), 0.25)]


def _variants() -> dict[str, dict[str, Any]]:
    """name -> {method: rejectnet|oe|msp, parts, virtual, labels}."""
    pool = [(PoolRows(), 1.0)]
    half = [(PoolRows(), 0.5)]

    def v(
        method: str, parts: Any = None, virtual: bool = False, labels: str = "random", k: int = 5
    ) -> Any:
        return {"method": method, "parts": parts, "virtual": virtual, "labels": labels, "k": k}

    return {
        "msp": v("msp"),
        "oe": v("oe", pool),
        "rn": v("rejectnet", pool),
        "rn+blend0.1": v("rejectnet", [(Blend(0.1), 1.0)]),
        "rn+blend0.3": v("rejectnet", [(Blend((0.1, 0.4)), 1.0)]),
        "rn+jigsaw": v("rejectnet", [*half, (Jigsaw(2), 0.5)]),
        "rn+jigsaw3": v("rejectnet", [*half, (Jigsaw(3), 0.5)]),
        "rn+stitch": v("rejectnet", [*half, (Stitch(), 0.5)]),
        "rn+overlay": v("rejectnet", [*half, (Overlay(), 0.5)]),
        "rn+rotate": v("rejectnet", [*half, (Rotate(), 0.5)]),
        "rn+warp": v("rejectnet", [*half, (Warp(), 0.5)]),
        "rn+warp20": v("rejectnet", [(PoolRows(), 0.8), (Warp(), 0.2)]),
        "rn+rotate20": v("rejectnet", [(PoolRows(), 0.8), (Rotate(), 0.2)]),
        "rn+synth20": v("rejectnet", [(PoolRows(), 0.8)] + [(s, w / 5) for s, w in SYNTH]),
        "rn+blend0.3+synth20": v(
            "rejectnet", [(Blend((0.1, 0.4)), 0.8)] + [(s, w / 5) for s, w in SYNTH]
        ),
        "rn+rot+warp": v("rejectnet", [*half, *ROT_WARP_HALF]),
        "rn-k1": v("rejectnet", pool, k=1),
        "rn-k2": v("rejectnet", pool, k=2),
        "rn+rot+warp-k1": v("rejectnet", [*half, *ROT_WARP_HALF], k=1),
        "rn+rot+warp-k2": v("rejectnet", [*half, *ROT_WARP_HALF], k=2),
        "rn+rot+warp-k10": v("rejectnet", [*half, *ROT_WARP_HALF], k=10),
        "rn-nopool+rot+warp-k1": v("rejectnet", ROT_WARP, k=1),
        "rn+rot+warp+virtual": v("rejectnet", [*half, *ROT_WARP_HALF], virtual=True),
        "rn+rot+warp+cluster": v("rejectnet", [*half, *ROT_WARP_HALF], labels="cluster"),
        "oe+rot+warp": v("oe", [*half, *ROT_WARP_HALF]),
        "rn-nopool+rot+warp": v("rejectnet", ROT_WARP),
        "oe-nopool+rot+warp": v("oe", ROT_WARP),
        "rn+virtual": v("rejectnet", pool, virtual=True),
        "rn+virtual-relu": v("rejectnet", pool, virtual="relu"),
        "rn+cluster": v("rejectnet", pool, labels="cluster"),
        "rn+synth": v("rejectnet", half + [(s, w / 2) for s, w in SYNTH]),
        "rn+synth+virtual": v("rejectnet", half + [(s, w / 2) for s, w in SYNTH], True),
        "rn+synth+cluster": v("rejectnet", half + [(s, w / 2) for s, w in SYNTH], labels="cluster"),
        "rn+all": v("rejectnet", half + [(s, w / 2) for s, w in SYNTH], True, "cluster"),
        "oe+synth": v("oe", half + [(s, w / 2) for s, w in SYNTH]),
        "rn-nopool+synth": v("rejectnet", SYNTH),
        "rn-nopool+synth+virtual": v("rejectnet", SYNTH, True),
        "oe-nopool+synth": v("oe", SYNTH),
        "rn-recommended": v("recommended"),
        "rn-recommended-nopool": v("recommended-nopool"),
    }


def stage_one(x: torch.Tensor, y: torch.Tensor, cache: Path, epochs: int, seed: int) -> nn.Module:
    model = SmallCNN(num_classes=10, image_size=28, dropout=0.1)
    if cache.exists():
        model.load_state_dict(load_file(str(cache)))
        return model
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    steps = epochs * math.ceil(len(y) / 64)
    opt = torch.optim.SGD(
        model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    model.train()
    t0 = time.perf_counter()
    for epoch in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 64):
            idx = perm[i : i + 64]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        print(
            f"stage one epoch {epoch + 1}/{epochs} ({time.perf_counter() - t0:.0f} s)", flush=True
        )
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(cache))
    return model


def build(spec: dict[str, Any], base: nn.Module) -> tuple[nn.Module, Any, ComposedSignal | None]:
    method = spec["method"]
    if method in ("recommended", "recommended-nopool"):
        recipe = recommended(pool=method == "recommended")
        net = RejectHead.wrap(base, k=5)
        labels = recipe.pseudo_labels
        loss = SelfSupervisedRejectLoss(10, 5.0, pseudo_labels=labels)
        return net, loss, recipe.signal
    virtual = None
    if spec["virtual"] == "relu":  # non-negative samples further out, for ReLU features
        virtual = VirtualOutliers(ratio=0.5, shell=(1.5, 3.0), nonnegative=True)
    elif spec["virtual"]:
        virtual = VirtualOutliers()
    signal = ComposedSignal(spec["parts"], virtual=virtual)
    if method == "oe":
        return copy.deepcopy(base), OutlierExposureLoss(0.5), signal
    net = RejectHead.wrap(base, k=spec["k"])
    labels = ClusterLabeler() if spec["labels"] == "cluster" else "random"
    return net, SelfSupervisedRejectLoss(10, 5.0, pseudo_labels=labels), signal


def make_step(
    net: nn.Module, loss_fn: Any, signal: ComposedSignal | None, opt: torch.optim.Optimizer
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], float]:
    def step(x_in: torch.Tensor, y: torch.Tensor, x_pool: torch.Tensor | None) -> float:
        n_in = x_in.shape[0]
        x_out = x_pool if signal is None else signal.outlier_batch(x_in, y, x_pool, 5 * n_in)
        x = x_in if x_out is None else torch.cat([x_in, x_out])
        logits = net(x)
        lo = logits[n_in:]
        extra = None if signal is None else signal.extra_outlier_logits(n_in, y)
        if extra is not None:
            lo = torch.cat([lo, extra])
        loss = loss_fn(logits[:n_in], y, lo)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


@torch.no_grad()
def logits_of(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    net.eval()
    return torch.cat([net(x[i : i + 1000]) for i in range(0, len(x), 1000)])


def evaluate(
    net: nn.Module,
    rejectnet: bool,
    val: tuple[torch.Tensor, torch.Tensor],
    dev: dict[str, torch.Tensor],
) -> dict[str, Any]:
    li = logits_of(net, val[0])
    score = (lambda z: sum_reject(z, 10)) if rejectnet else msp
    s_in = score(li)
    res: dict[str, Any] = {"id_acc": float((li[:, :10].argmax(1) == val[1]).float().mean())}
    for name, x in dev.items():
        s_out = score(logits_of(net, x))
        res[name] = (float(auroc(s_in, s_out)), float(fpr_at_tpr(s_in, s_out, 0.95)))
    return res


def step_cost(
    step: Callable[..., float],
    net: nn.Module,
    x_in: torch.Tensor,
    y: torch.Tensor,
    x_pool: torch.Tensor | None,
    reps: int,
) -> float:
    """Median full step over median plain-CE step on the same concatenated batch (interleaved)."""
    width = 10 + (net.k if isinstance(net, RejectHead) else 0)
    x_all = torch.cat([x_in, x_pool if x_pool is not None else x_in.repeat(5, 1, 1, 1)])
    y_all = torch.randint(0, width, (x_all.shape[0],))
    plain_opt = torch.optim.SGD(net.parameters(), lr=1e-6, momentum=0.9)
    ce = CrossEntropyLoss()

    def plain() -> None:
        loss = ce(net(x_all), y_all)
        plain_opt.zero_grad(set_to_none=True)
        loss.backward()
        plain_opt.step()

    net.train()
    a, b = [], []
    for _ in range(reps):
        t = time.perf_counter()
        step(x_in, y, x_pool)
        a.append(time.perf_counter() - t)
        t = time.perf_counter()
        plain()
        b.append(time.perf_counter() - t)
    return statistics.median(a) / statistics.median(b)


def markdown_table(path: str, names: list[str] | None = None) -> str:
    """The results of ``path`` (JSON lines) as a markdown table, AUROC / FPR95 in %.

    Variant and set names are escaped (:func:`rejectnet.report.tables.markdown_table`).
    """
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    by_name = {r["name"]: r for r in rows}  # the last run of a variant wins
    order = [n for n in (names or list(by_name)) if n in by_name]
    sets = [k for k, v in rows[0].items() if isinstance(v, list)]
    cells = []
    for name in order:
        r = by_name[name]
        per_set = [f"{100 * r[k][0]:.2f} / {100 * r[k][1]:.2f}" for k in sets]
        cells.append([name, f"{100 * r['id_acc']:.2f}", *per_set, f"{r['cost']:.2f}x"])
    header = ["variant", "ID acc", *sets, "step cost"]
    return "\n".join(escaped_table(header, cells, numeric_from=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--variants", default="all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ft-seed", type=int, default=None, help="stage-two seed (default --seed)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--stage-one-epochs", type=int, default=3)
    p.add_argument("--cache", default="/tmp/ablate_stage1_seed{seed}.safetensors")
    p.add_argument("--n-dev", type=int, default=3000)
    p.add_argument("--cost-reps", type=int, default=10)
    p.add_argument("--out", default="/tmp/ablation.jsonl")
    p.add_argument("--table", action="store_true", help="print --out as markdown and exit")
    args = p.parse_args()
    if args.table:
        names = None if args.variants == "all" else args.variants.split(",")
        print(markdown_table(args.out, names))
        return
    torch.set_num_threads(1)
    root = Path(args.data_dir)
    mnist = load_npz(root / "mnist.npz", keys=("x_train", "y_train"))
    x_all = images_to_tensor(mnist["x_train"])
    y_all = torch.from_numpy(mnist["y_train"].astype(np.int64))
    rng = np.random.default_rng(args.seed)
    perm = torch.from_numpy(rng.permutation(len(y_all)))
    val_idx, train_idx = perm[:5000], perm[5000:]
    x_tr, y_tr = x_all[train_idx], y_all[train_idx]
    val = (x_all[val_idx], y_all[val_idx])
    pool_all = images_to_tensor(load_npz(root / "photo_patches.npz", keys=("x_train",))["x_train"])
    pool_perm = torch.from_numpy(rng.permutation(len(pool_all)))
    pool, pool_dev = pool_all[pool_perm[5000:]], pool_all[pool_perm[:5000]]
    dev = letter_dev_sets(args.n_dev, 28, seed=123)
    fashion = images_to_tensor(load_npz(root / "fashion_mnist.npz", keys=("x_test",))["x_test"])
    dev["fashion"] = fashion[: 2 * args.n_dev]
    dev["photo-heldout"] = pool_dev
    base = stage_one(
        x_tr, y_tr, Path(args.cache.format(seed=args.seed)), args.stage_one_epochs, args.seed
    )
    ft_idx = torch.from_numpy(rng.permutation(len(y_tr))[: 64 * args.steps])
    variants = _variants()
    ft_seed = args.seed if args.ft_seed is None else args.ft_seed
    names = list(variants) if args.variants == "all" else args.variants.split(",")
    for name in names:
        spec = variants[name]
        t0 = time.perf_counter()
        if spec["method"] == "msp":
            res = evaluate(base, False, val, dev)
            res.update(name=name, cost=1.0, seconds=0.0)
        else:
            torch.manual_seed(ft_seed)
            net, loss_fn, signal = build(spec, base)
            uses_pool = signal is None or signal.uses_pool
            opt = torch.optim.SGD(
                net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4
            )
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / args.steps))
            )
            step = make_step(net, loss_fn, signal, opt)
            g = torch.Generator().manual_seed(ft_seed)
            order = ft_idx[torch.randperm(len(ft_idx), generator=g)]
            pool_order = torch.randperm(len(pool), generator=g)
            if signal is not None:
                signal.attach(net)
            net.train()
            for s in range(args.steps):
                idx = order[s * 64 : (s + 1) * 64]
                pidx = pool_order[(s * 320) % len(pool) :][:320]
                step(x_tr[idx], y_tr[idx], pool[pidx] if uses_pool else None)
                sched.step()
            train_s = time.perf_counter() - t0
            cost = step_cost(
                step, net, x_tr[:64], y_tr[:64], pool[:320] if uses_pool else None, args.cost_reps
            )
            if signal is not None:
                signal.detach()
            res = evaluate(net, isinstance(net, RejectHead), val, dev)
            res.update(name=name, cost=cost, seconds=round(train_s, 1))
        res["seed"] = args.seed
        res["ft_seed"] = ft_seed
        if ft_seed != args.seed:
            res["name"] = name = f"{name} (stage-two seed {ft_seed})"
        cells = "  ".join(
            f"{k} {100 * v[0]:.2f}/{100 * v[1]:.2f}" for k, v in res.items() if isinstance(v, tuple)
        )
        print(
            f"{name:<26} acc {100 * res['id_acc']:.2f}  cost {res['cost']:.2f}x  {cells}  "
            f"({res['seconds']} s)",
            flush=True,
        )
        with open(args.out, "a") as f:
            f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
