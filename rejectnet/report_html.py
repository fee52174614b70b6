"""The former path of :mod:`rejectnet.report.html_page` (kept working; new code imports there).

Example:
    >>> from rejectnet import report_html
    >>> from rejectnet.report import html_page
    >>> report_html.reports_to_html is html_page.reports_to_html
    True
"""

from rejectnet.report.html_page import reports_to_html

__all__ = ["reports_to_html"]
