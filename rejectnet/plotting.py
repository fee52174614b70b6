"""The former path of :mod:`rejectnet.report.plots` (kept working; new code imports there).

Example:
    >>> from rejectnet import plotting
    >>> from rejectnet.report import plots
    >>> plotting.plot_reports is plots.plot_reports
    True
"""

from rejectnet.report.plots import PLOT_NAMES, figure, figures, plot_reports

__all__ = ["PLOT_NAMES", "figure", "figures", "plot_reports"]
