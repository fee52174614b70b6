"""Evaluation metrics for OOD detection and selective classification.

OOD detection (:mod:`rejectnet.metrics.ood`) takes in-distribution scores ``s_in`` and
out-of-distribution scores ``s_out``; every score is "higher = more OOD" and OOD is the
positive class. Selective classification (:mod:`rejectnet.metrics.selective`) takes the
scores of in-distribution samples and whether each prediction is correct.

All inputs may be torch tensors, numpy arrays or lists; they are never modified. Every
scalar metric is a python float holding a fraction (0.95), not a percentage.

Example:
    >>> from rejectnet.metrics import ood_metrics
    >>> m = ood_metrics([0.1, 0.2, 0.3], [0.4, 0.8, 0.9])
    >>> m["auroc"], m["fpr95"]
    (1.0, 0.0)
"""

from rejectnet.metrics.ood import (
    aupr_in,
    aupr_out,
    auroc,
    detection_error,
    fpr_at_tpr,
    ood_metrics,
)
from rejectnet.metrics.selective import (
    RiskCoverage,
    aurc,
    risk_coverage,
    total_misclassification_rate,
)

__all__ = [
    "RiskCoverage",
    "aupr_in",
    "aupr_out",
    "aurc",
    "auroc",
    "detection_error",
    "fpr_at_tpr",
    "ood_metrics",
    "risk_coverage",
    "total_misclassification_rate",
]
