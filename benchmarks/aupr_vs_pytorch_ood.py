"""How far pytorch-ood's AUPR (trapezoid) is from ours (average precision), and that
AUROC and FPR@95%TPR agree. Prints the table of docs/reference/metrics.md.

    python benchmarks/aupr_vs_pytorch_ood.py      # needs pip install "rejectnet[peers]"
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_ood.metrics import OODMetrics

from rejectnet.metrics import ood_metrics


def theirs(s_in: np.ndarray, s_out: np.ndarray) -> dict[str, float]:
    m = OODMetrics()
    labels = np.r_[np.zeros(len(s_in)), -np.ones(len(s_out))]
    m.update(torch.from_numpy(np.r_[s_in, s_out]), torch.from_numpy(labels).long())
    return m.compute()


def main() -> None:
    rng = np.random.default_rng(0)
    for n in (50, 1000, 10000):
        for decimals in (None, 1, 0):
            gap = {"aupr_in": 0.0, "aupr_out": 0.0, "auroc": 0.0, "fpr95": 0.0}
            for _ in range(20):
                s_in, s_out = rng.normal(0, 1, n), rng.normal(1.5, 1, n)
                if decimals is not None:
                    s_in, s_out = np.round(s_in, decimals), np.round(s_out, decimals)
                o, t = ood_metrics(s_in, s_out), theirs(s_in, s_out)
                pairs = {"aupr_in": "AUPR-IN", "aupr_out": "AUPR-OUT", "auroc": "AUROC"}
                for ours_key, their_key in {**pairs, "fpr95": "FPR95TPR"}.items():
                    gap[ours_key] = max(gap[ours_key], abs(o[ours_key] - t[their_key]))
            kind = "continuous" if decimals is None else f"rounded to {decimals} decimals"
            print(
                f"n={n:5d} per side, {kind:22s} max gap: AUPR-in {gap['aupr_in']:.1e}, "
                f"AUPR-out {gap['aupr_out']:.1e}, AUROC {gap['auroc']:.0e}, "
                f"FPR95 {gap['fpr95']:.0e}"
            )


if __name__ == "__main__":
    main()
