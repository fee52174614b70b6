"""The documentation site builds with no warning, and the code in it is true to the API.

``mkdocs build --strict`` fails on any warning: a broken link or cross-reference, a page
missing from the nav, a docstring whose ``Args`` name a parameter the signature lacks, or
an ``--8<--`` snippet section missing from the example script it quotes.
"""

from __future__ import annotations

import importlib.util
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import rejectnet

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SNIPPET = re.compile(r"^--8<--", re.M)


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600, env=env
    )


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("mkdocs", "mkdocstrings", "material")),
    reason="the docs extra is not installed (pip install -e '.[docs]')",
)
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(site),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert "WARNING" not in log, log
    assert (site / "index.html").is_file()
    head = (site / "reference" / "head" / "index.html").read_text(encoding="utf-8")
    assert 'id="rejectnet.head.RejectHead.calibrate"' in head  # the API was rendered
    assert ":class:`" not in head and ":func:`" not in head  # roles became links or code


def test_reference_has_a_page_for_every_public_module() -> None:
    documented = set()
    for page in (DOCS / "reference").glob("*.md"):
        documented |= set(re.findall(r"^:::\s+([\w.]+)", page.read_text(), re.M))
    public = {
        f"rejectnet.{m.name}"
        for m in pkgutil.iter_modules(rejectnet.__path__)
        if not m.name.startswith("_")
    }
    missing = sorted(public - documented)
    assert not missing, (
        f"add a docs/reference page with '::: <module>' (and a nav entry): {missing}"
    )


def test_every_top_level_name_is_listed() -> None:
    table = (DOCS / "reference" / "rejectnet.md").read_text()
    missing = [name for name in rejectnet.__all__ if f"`{name}`" not in table]
    assert not missing, f"list these in docs/reference/rejectnet.md: {missing}"


def test_every_python_block_compiles() -> None:
    pages = sorted(DOCS.rglob("*.md"))
    assert pages
    for page in pages:
        for i, code in enumerate(_python_blocks(page)):
            if SNIPPET.search(code):
                continue  # a section of an example script, run by tests/examples
            compile(code, f"{page.relative_to(ROOT)} block {i + 1}", "exec")


@pytest.mark.parametrize("page", ["index.md", "quickstart.md", "concepts.md"])
def test_self_contained_pages_run(page: str, tmp_path: Path) -> None:
    code = "\n\n".join(_python_blocks(DOCS / page))
    assert code.strip()
    done = _run(code, tmp_path)
    assert done.returncode == 0, f"docs/{page}:\n{done.stdout}\n{done.stderr}"
