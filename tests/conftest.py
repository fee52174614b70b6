"""Shared fixtures (tiny models, synthetic data) and the reliability suite's summary line."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn


class TinyCNN(nn.Module):
    """A hand-written two-conv classifier like the paper's MNIST network, shrunk."""

    def __init__(self, num_classes: int = 4, channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc1 = nn.Linear(32, 16)
        self.fc2 = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = self.pool(x).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.fixture
def tiny_cnn() -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(6, 1, 8, 8, generator=g)


# ---------------------------------------------------------------- reliability suite counters
# tests/reliability counts the cases it tries and the faults it injects through the
# session-scoped ``reliability`` fixture (tests/reliability/conftest.py). Under pytest-xdist
# each worker hands its counts to the controller in ``workeroutput``; the controller (or
# the single process without xdist) prints one summary line at the end.
RELIABILITY_DIR = "tests/reliability/"


class ReliabilityCounts:
    """Cases tried and faults injected by the reliability suite, plus its failed tests."""

    def __init__(self) -> None:
        self.cases = 0
        self.faults = 0
        self.failed: set[str] = set()
        self.ran = False

    def case(self, n: int = 1) -> None:
        """Record ``n`` cases tried."""
        self.cases += n

    def fault(self, n: int = 1) -> None:
        """Record ``n`` faults injected (each also counts as a case)."""
        self.faults += n
        self.cases += n


RELIABILITY_KEY = pytest.StashKey[ReliabilityCounts]()
_CONFIG: list[pytest.Config] = []  # the running session's config, for the report hook


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RELIABILITY_KEY] = ReliabilityCounts()
    _CONFIG[:] = [config]


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # In the controller this sees every report, also those replayed from xdist workers.
    if not _CONFIG or _is_worker(_CONFIG[0]):
        return
    if not report.nodeid.replace("\\", "/").startswith(RELIABILITY_DIR):
        return
    counts = _CONFIG[0].stash[RELIABILITY_KEY]
    counts.ran = True
    if report.failed:
        counts.failed.add(report.nodeid)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if _is_worker(config):
        counts = config.stash[RELIABILITY_KEY]
        config.workeroutput["reliability"] = {  # type: ignore[attr-defined]
            "cases": counts.cases,
            "faults": counts.faults,
        }


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist, in the controller: add a finished worker's counts to the totals."""
    out = getattr(node, "workeroutput", {}).get("reliability")
    if out and _CONFIG:
        counts = _CONFIG[0].stash[RELIABILITY_KEY]
        counts.cases += int(out["cases"])
        counts.faults += int(out["faults"])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The summary line (totals of all workers), when reliability tests ran."""
    counts = terminalreporter.config.stash.get(RELIABILITY_KEY, None)
    if counts is not None and counts.ran:
        terminalreporter.write_line(
            f"reliability: {counts.cases} cases tried, {counts.faults} faults injected, "
            f"{len(counts.failed)} failures"
        )
