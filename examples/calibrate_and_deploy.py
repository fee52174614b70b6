"""Calibrate the reject threshold (for a coverage, a TPR or a risk), save, load, predict.

After stage two the wrapped model scores every input; a threshold turns the score into a
decision (``is_ood = score > threshold``). This script sets it three ways on held-out data
that was used neither for training nor for the final test:

* for a target coverage, from in-distribution data alone (``net.calibrate``);
* for a target TPR on held-out *training* outliers (``scores.threshold_at_tpr``);
* for a target risk, the error rate among accepted inputs, with a statistical guarantee
  (``scores.threshold_for_risk``, Geifman & El-Yaniv 2017);

then saves the model with its threshold to one safetensors file, loads it into a fresh
copy of the architecture and classifies a batch with ``predict()``.

    python examples/calibrate_and_deploy.py --smoke                    # synthetic, seconds
    python examples/calibrate_and_deploy.py --data-dir ../shared/data  # MNIST, ~a minute
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

import rejectnet
from rejectnet import scores
from rejectnet.data import images_to_tensor, load_npz
from rejectnet.models import SmallCNN


def make_model(smoke: bool) -> SmallCNN:
    """The architecture, un-wrapped; ``rejectnet.load`` needs a fresh copy of it."""
    if smoke:
        return SmallCNN(num_classes=10, image_size=28, channels=(8, 16), hidden=32)
    return SmallCNN(num_classes=10, image_size=28)


def synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tiny stand-in data: 10 classes of horizontal bands, and noise outliers."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = 0.2 * torch.rand(n, 1, 28, 28, generator=g)
    for c in range(10):
        x[y == c, :, 2 + 2 * c : 5 + 2 * c, 4:24] += 0.8
    return x.clamp(0, 1), y, torch.rand(3 * n, 1, 28, 28, generator=g)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic data, seconds")
    parser.add_argument("--data-dir", type=Path, help="folder with mnist.npz etc.")
    parser.add_argument("--out", type=Path, help="output folder (default: a temp folder)")
    parser.add_argument("--n", type=int, default=6000, help="training digits (full run)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each stage")
    parser.add_argument("--target-risk", type=float, default=0.02, help="e.g. 0.02 = 2%%")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.smoke and args.data_dir is None:
        parser.error("pass --data-dir (e.g. ../shared/data) or --smoke")
    out = args.out or Path(tempfile.mkdtemp(prefix="rejectnet-deploy-"))
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()

    if args.smoke:
        x, y, outliers = synthetic(160, args.seed)
        x_test, _, ood_test = synthetic(16, args.seed + 1)
        batch, epochs = 16, 1
    else:
        rng = np.random.default_rng(args.seed)
        mnist = load_npz(args.data_dir / "mnist.npz", keys=("x_train", "y_train", "x_test"))
        photos = load_npz(args.data_dir / "photo_patches.npz", keys=("x_train",))["x_train"]
        fashion = load_npz(args.data_dir / "fashion_mnist.npz", keys=("x_test",))["x_test"]
        idx = rng.choice(len(mnist["x_train"]), size=args.n, replace=False)
        x, y = images_to_tensor(mnist["x_train"][idx]), torch.from_numpy(mnist["y_train"][idx])
        outliers = images_to_tensor(photos[rng.choice(len(photos), size=args.n, replace=False)])
        x_test, ood_test = images_to_tensor(mnist["x_test"][:8]), images_to_tensor(fashion[:8])
        batch, epochs = 64, args.epochs
    y = y.long()

    # Hold out data for the threshold: digits never trained on, outliers never trained on.
    n_val = len(x) // 5
    x_val, y_val, x_train, y_train = x[:n_val], y[:n_val], x[n_val:], y[n_val:]
    out_val, out_train = outliers[: len(outliers) // 5], outliers[len(outliers) // 5 :]
    in_loader = DataLoader(TensorDataset(x_train, y_train), batch_size=batch, shuffle=True)
    out_loader = DataLoader(TensorDataset(out_train), batch_size=5 * batch, shuffle=True)
    val_loader = DataLoader(TensorDataset(x_val, y_val), batch_size=256)

    model = make_model(args.smoke)
    rejectnet.train_classifier(model, in_loader, epochs=epochs, lr=0.05, progress=False)
    net = rejectnet.RejectHead.wrap(model, k=5)
    rejectnet.SelfSupervisedOODFinetuner(net, epochs=epochs, lr=0.01, progress=False).fit(
        in_loader, out_loader
    )
    net.eval()

    # --8<-- [start:coverage]
    # 1. Keep 95% of in-distribution inputs: needs no OOD data at all.
    result = net.calibrate(val_loader, coverage=0.95, score="sum_reject")
    print("coverage:", result)
    # --8<-- [end:coverage]

    # --8<-- [start:tpr]
    # 2. Flag 95% of the held-out training outliers, with the fewest digits flagged.
    with torch.no_grad():
        s_val = net.ood_score(x_val, score="sum_reject")
        s_out = net.ood_score(out_val, score="sum_reject")
    at_tpr = scores.threshold_at_tpr(s_val, s_out, tpr=0.95)
    print("TPR:     ", at_tpr)
    # --8<-- [end:tpr]

    # --8<-- [start:risk]
    # 3. Error rate among accepted digits <= target, with probability >= 1 - delta.
    with torch.no_grad():
        logits = net(x_val)
    s_val = scores.sum_reject(logits, num_classes=net.num_classes)
    correct = logits[:, : net.num_classes].argmax(dim=1) == y_val
    try:
        for_risk = scores.threshold_for_risk(
            s_val, correct, target_risk=args.target_risk, delta=0.05
        )
        print("risk:    ", for_risk)
    except ValueError as err:  # too little data or too weak a model for that target
        print("risk:     not achievable here:", err)
    # --8<-- [end:risk]

    # Deploy with the coverage threshold (set_threshold(at_tpr) or (for_risk) work alike).
    net.set_threshold(result, score="sum_reject")

    # --8<-- [start:deploy]
    path = rejectnet.save(net, out / "model.safetensors")  # weights + threshold, no pickle
    meta = rejectnet.read_metadata(path)  # the header only; nothing is executed
    print(f"saved {path.name}: C={meta['num_classes']}, k={meta['k']}, score={meta['score']}")

    deployed = rejectnet.load(path, make_model(args.smoke))  # a fresh, un-wrapped copy
    deployed.eval()
    pred = deployed.predict(torch.cat([x_test[:8], ood_test[:8]]))
    print("labels (-1 = rejected):", pred.labels.tolist())
    print("OOD scores:", [round(v, 3) for v in pred.ood_score.tolist()])
    # --8<-- [end:deploy]

    # --8<-- [start:unwrap]
    plain = deployed.unwrap()  # the C-class model, fine-tuned weights, no reject units
    same = torch.equal(plain.eval()(x_test[:8]), deployed(x_test[:8])[:, : deployed.num_classes])
    print(f"unwrap(): plain {type(plain).__name__}, same class logits: {same}")
    # --8<-- [end:unwrap]
    print(f"done ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
