"""OOD scores and threshold calibration.

Every score is "higher = more likely OOD".

- Reject scores over the ``(N, C + k)`` logits of a model with ``k`` reject units
  (Mohseni et al., AAAI 2020): :func:`max_reject`, :func:`sum_reject` (rejectnet's
  default), :func:`weighted_reject` (weights from :func:`fit_reject_weights`),
  :func:`entropy_reject` and :func:`entropy_diff`.
- Baselines over ``(N, C)`` class logits: :func:`msp`, :func:`energy`,
  :func:`max_logit`.
- A registry to look scores up by name: :func:`get`, :func:`spec`, :func:`available`,
  :func:`register`, :func:`compute`.
- Thresholds (``score > threshold`` means OOD): :func:`threshold_for_coverage`,
  :func:`threshold_at_tpr`, :func:`threshold_for_risk`, each returning a
  :class:`ThresholdResult`.
"""

from rejectnet.scores.baseline import energy, max_logit, msp
from rejectnet.scores.registry import (
    MAX_NAME_BYTES,
    ScoreKind,
    ScoreSpec,
    available,
    compute,
    get,
    register,
    spec,
    unregister,
)
from rejectnet.scores.reject import (
    entropy_diff,
    entropy_reject,
    max_reject,
    sum_reject,
    weighted_reject,
)
from rejectnet.scores.thresholds import (
    ThresholdResult,
    threshold_at_tpr,
    threshold_for_coverage,
    threshold_for_risk,
)
from rejectnet.scores.weights import fit_reject_weights

__all__ = [
    "MAX_NAME_BYTES",
    "ScoreKind",
    "ScoreSpec",
    "ThresholdResult",
    "available",
    "compute",
    "energy",
    "entropy_diff",
    "entropy_reject",
    "fit_reject_weights",
    "get",
    "max_logit",
    "max_reject",
    "msp",
    "register",
    "spec",
    "sum_reject",
    "threshold_at_tpr",
    "threshold_for_coverage",
    "threshold_for_risk",
    "unregister",
    "weighted_reject",
]
