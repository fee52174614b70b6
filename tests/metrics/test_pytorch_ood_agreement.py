"""Our OOD metrics against pytorch-ood's OODMetrics on the same scores.

AUROC and FPR@95%TPR must agree. AUPR is computed differently on purpose (ours is
scikit-learn's average precision, pytorch-ood's is the trapezoidal area under the
precision-recall points); the test pins down each definition so that the documented
explanation stays true.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import auc, average_precision_score, precision_recall_curve

pytest.importorskip(
    "pytorch_ood", reason="pytorch-ood is not installed; the cross-check needs its OODMetrics"
)

from pytorch_ood.metrics import OODMetrics

from rejectnet.metrics import ood_metrics


def _score_sets() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(2024)
    sets = []
    for i in range(20):
        n_in, n_out = rng.integers(5, 400, size=2)
        s_in = rng.normal(0.0, 1.0, n_in)
        s_out = rng.normal(rng.uniform(0, 2), rng.uniform(0.5, 2), n_out)
        if i % 2:  # every other set: heavy ties, as low-precision or saturated scores have
            s_in, s_out = np.round(s_in, 1), np.round(s_out, 1)
        sets.append((s_in, s_out))
    return sets


def _theirs(s_in: np.ndarray, s_out: np.ndarray) -> dict[str, float]:
    metrics = OODMetrics()
    scores = torch.from_numpy(np.r_[s_in, s_out])
    labels = torch.from_numpy(np.r_[np.zeros(len(s_in)), -np.ones(len(s_out))]).long()
    metrics.update(scores, labels)
    return metrics.compute()


@pytest.mark.parametrize(("s_in", "s_out"), _score_sets())
def test_auroc_and_fpr95_agree_with_pytorch_ood(s_in: np.ndarray, s_out: np.ndarray) -> None:
    ours = ood_metrics(s_in, s_out)
    theirs = _theirs(s_in, s_out)
    assert ours["auroc"] == pytest.approx(theirs["AUROC"], abs=1e-12)
    assert ours["fpr95"] == pytest.approx(theirs["FPR95TPR"], abs=1e-12)


@pytest.mark.parametrize(("s_in", "s_out"), _score_sets())
def test_aupr_definitions(s_in: np.ndarray, s_out: np.ndarray) -> None:
    ours = ood_metrics(s_in, s_out)
    theirs = _theirs(s_in, s_out)
    y = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
    s = np.r_[s_in, s_out]
    # ours: average precision, sum_k (R_k - R_{k-1}) P_k (a step function)
    assert ours["aupr_out"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert ours["aupr_in"] == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)
    # pytorch-ood: the trapezoidal rule through the same precision-recall points
    precision, recall, _ = precision_recall_curve(y, s)
    assert theirs["AUPR-OUT"] == pytest.approx(auc(recall, precision), abs=1e-12)
    precision, recall, _ = precision_recall_curve(1 - y, -s)
    assert theirs["AUPR-IN"] == pytest.approx(auc(recall, precision), abs=1e-12)


def test_aupr_rules_on_a_worked_example() -> None:
    # OOD scores 0.3 and 0.2, in-distribution 0.2 and 0.1: the tied group at 0.2 holds
    # one sample of each. Precision-recall points (R, P): (0.5, 1) at 0.3, (1, 2/3) at 0.2.
    s_in, s_out = np.array([0.1, 0.2]), np.array([0.2, 0.3])
    # average precision: 0.5 * 1 + 0.5 * 2/3
    assert ood_metrics(s_in, s_out)["aupr_out"] == pytest.approx(5 / 6)
    # trapezoid from (0, 1): 0.5 * 1 + 0.5 * (1 + 2/3) / 2, the tie is interpolated linearly
    assert _theirs(s_in, s_out)["AUPR-OUT"] == pytest.approx(11 / 12)
    # without the tie both rules give 1
    s_out = np.array([0.25, 0.3])
    assert ood_metrics(s_in, s_out)["aupr_out"] == pytest.approx(1.0)
    assert _theirs(s_in, s_out)["AUPR-OUT"] == pytest.approx(1.0)
