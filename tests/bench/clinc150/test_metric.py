"""rejectnet.bench.clinc150.metric: CLINC150's own metric at a threshold calibrated on val."""

from __future__ import annotations

import numpy as np
import pytest

from rejectnet.bench.clinc150 import clinc150_metric


def test_metric_counts_rejected_in_scope_as_errors():
    s_val = np.linspace(0, 1, 101)  # threshold at 95% coverage: 0.95
    m = clinc150_metric(s_val, [0.1, 0.5, 0.99, 0.2], [True, False, True, True], {"a": [0.96, 0.5]})
    assert m["threshold"] == pytest.approx(0.95)
    assert m["in_scope_accuracy"] == pytest.approx(2 / 4)  # 0.99 rejected, 0.5 wrong
    assert m["oos_recall"] == {"a": 0.5}
    with pytest.raises(ValueError, match="correct has shape"):
        clinc150_metric(s_val, [0.1, 0.2], [True], {"a": [0.5]})


def test_threshold_uses_val_only():
    s_val = np.linspace(0, 1, 101)
    a = clinc150_metric(s_val, [0.1], [True], {"a": [0.5]})
    b = clinc150_metric(s_val, [0.99], [True], {"a": [0.99, 0.2]})
    assert a["threshold"] == b["threshold"]  # the test and OOD scores never move it
    assert b["in_scope_accuracy"] == 0.0 and b["oos_recall"] == {"a": 0.5}
