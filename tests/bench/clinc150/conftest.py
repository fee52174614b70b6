"""Fixtures of tests/bench/clinc150: the made-up CLINC150 folder of tests/text."""

from tests.text.conftest import clinc_dir

__all__ = ["clinc_dir"]
