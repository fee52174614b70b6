"""The reliability suite's counter: every test records the cases it tries and faults it injects.

The totals (aggregated over pytest-xdist workers) are printed at the end of the run by
``pytest_terminal_summary`` in ``tests/conftest.py``::

    reliability: N cases tried, M faults injected, F failures
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import RELIABILITY_KEY, ReliabilityCounts
from tests.reliability._crashjob import single_thread


@pytest.fixture(scope="session")
def reliability(request: pytest.FixtureRequest) -> ReliabilityCounts:
    """Session-wide counts: ``reliability.case()`` per case tried, ``.fault()`` per fault."""
    return request.config.stash[RELIABILITY_KEY]


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread, and two xdist workers share two cores."""
    with single_thread():
        yield
