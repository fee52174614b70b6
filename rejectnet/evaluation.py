"""The former path of :mod:`rejectnet.report`'s evaluation names (kept working).

``from rejectnet.evaluation import evaluate, Report, DatasetLogits, ...`` imports the
same objects as :mod:`rejectnet.report` (every name of its ``__all__``); new code
imports from there.

Example:
    >>> from rejectnet import evaluation, report
    >>> evaluation.evaluate is report.evaluate and evaluation.Report is report.Report
    True
"""

from rejectnet.report import *  # noqa: F403 - the former path re-exports the whole wing
from rejectnet.report import __all__ as __all__
