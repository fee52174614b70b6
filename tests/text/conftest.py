"""Fixtures of tests/text."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.text._support import write_tiny_clinc


@pytest.fixture
def clinc_dir(tmp_path: Path) -> Path:
    """A made-up CLINC150 folder (``clinc150.json`` and ``wiki_sentences.txt``)."""
    return write_tiny_clinc(tmp_path)
