"""Wall time of ``rejectnet.metrics.ood_metrics`` on 1,000,000 scores versus scikit-learn.

Two inputs of 500,000 in-distribution + 500,000 OOD scores: random float64 values
(no ties), and the same values rounded to 2 decimals (heavy ties). For each, the best of
3 runs of ``ood_metrics`` (AUROC, AUPR-In, AUPR-Out, FPR@95%TPR, detection error from
one sort) is compared with the best of 3 runs of scikit-learn's ``roc_auc_score`` plus
two ``average_precision_score`` calls (AUPR-Out and AUPR-In), which compute less.

Threads are pinned to one (``torch.set_num_threads(1)`` and the BLAS/OpenMP variables
below, set before numpy loads); the target is under 1 s for ``ood_metrics``.

Run: ``python benchmarks/bench_metrics.py``
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import partial  # noqa: E402

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import sklearn  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import average_precision_score, roc_auc_score  # noqa: E402

from rejectnet.metrics import ood_metrics  # noqa: E402

__all__ = ["main"]

N_EACH = 500_000
REPEATS = 3


def _best_of(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _sklearn_all(s_in: npt.NDArray[np.float64], s_out: npt.NDArray[np.float64]) -> None:
    y = np.concatenate([np.zeros(s_in.size), np.ones(s_out.size)])
    s = np.concatenate([s_in, s_out])
    roc_auc_score(y, s)
    average_precision_score(y, s)
    average_precision_score(1 - y, -s)


def main() -> None:
    """Run the benchmark and print one line per input."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    s_in = rng.normal(0.0, 1.0, N_EACH)
    s_out = rng.normal(1.5, 1.0, N_EACH)
    cases = {
        "random floats": (s_in, s_out),
        "heavy ties (round 2)": (np.round(s_in, 2), np.round(s_out, 2)),
    }
    print(
        f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
        f"python {platform.python_version()}, {platform.processor() or platform.machine()}, "
        f"threads=1, n={2 * N_EACH:,} ({N_EACH:,} in + {N_EACH:,} out), best of {REPEATS}"
    )
    for name, (a, b) in cases.items():
        n_distinct = np.unique(np.concatenate([a, b])).size
        ours = _best_of(partial(ood_metrics, a, b))
        theirs = _best_of(partial(_sklearn_all, a, b))
        m = ood_metrics(a, b)
        print(
            f"{name:22s} distinct={n_distinct:>9,}  ood_metrics {ours:.3f} s  "
            f"sklearn roc_auc+2xAP {theirs:.3f} s  ratio sklearn/ours {theirs / ours:.1f}x  "
            f"(auroc={m['auroc']:.6f} fpr95={m['fpr95']:.6f})"
        )


if __name__ == "__main__":
    main()
