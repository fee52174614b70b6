"""The former path of :mod:`rejectnet.report`'s evaluation names (kept working).

``from rejectnet.evaluation import evaluate, Report, DatasetLogits, ...`` imports the
same objects as :mod:`rejectnet.report`; new code imports from there.

Example:
    >>> from rejectnet import evaluation, report
    >>> evaluation.evaluate is report.evaluate and evaluation.Report is report.Report
    True
"""

from rejectnet.report import (
    GROUPS,
    METRIC_NAMES,
    MIXED,
    DatasetLogits,
    DatasetScores,
    OODResult,
    Report,
    Scorer,
    compute_logits,
    compute_scores,
    evaluate,
    reports_to_html,
    reports_to_markdown,
)

__all__ = [
    "GROUPS",
    "METRIC_NAMES",
    "MIXED",
    "DatasetLogits",
    "DatasetScores",
    "OODResult",
    "Report",
    "Scorer",
    "compute_logits",
    "compute_scores",
    "evaluate",
    "reports_to_html",
    "reports_to_markdown",
]
