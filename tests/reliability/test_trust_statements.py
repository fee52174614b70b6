"""The how-to pages say plainly what is trusted and what is checked (issue 22, item 13).

A ``rejectnet bench`` config file is code (``[model] name = "os:system"`` ran a shell
command in the probe) and a ``.pt2`` package is native code: no check can make them
safe, so the pages on files, deployment and benchmarking must say so, next to what is
checked (bounded readers, no unpickling, outputs never written through a symlink, atomic
writes, a pre-flight before training). The CLI's own help is tested in
``test_bench_inputs.py::test_config_help_says_a_config_is_code``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ReliabilityCounts

HOWTO = Path(__file__).resolve().parents[2] / "docs" / "howto"

# what each page must say: (what, pattern over the page's text, markup removed)
SAYS = [
    ("a config file is code", r"config file is code"),
    ("a .pt2 package is native code", r"\.pt2.{0,80}native code|native code.{0,80}\.pt2"),
    ("nothing is unpickled", r"never unpickled|nothing is (ever )?unpickled|ever unpickled"),
    ("readers are bounded", r"\bbounded\b"),
    ("no write through a symlink", r"never written through|never through a symlink"),
    ("writes are atomic", r"\batomic(ally)?\b"),
    ("checks before training", r"before (training|stage one|the first weight update)"),
]


@pytest.mark.parametrize("page", ["files-and-resume.md", "deploy.md", "benchmark-your-data.md"])
def test_the_page_says_what_is_trusted_and_what_is_checked(
    page: str, reliability: ReliabilityCounts
) -> None:
    raw = (HOWTO / page).read_text()
    assert "## What is trusted, what is checked" in raw
    text = " ".join(re.sub(r"[*`]", "", raw).split())
    for what, pattern in SAYS:
        reliability.case()
        assert re.search(pattern, text, re.I), f"{page} does not say that {what}"
