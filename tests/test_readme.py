"""README stays true: its usage example runs, and CI runs its test command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_usage_example_runs(tmp_path: Path) -> None:
    code = _blocks("python")[0]
    assert len([line for line in code.splitlines() if line.strip()]) <= 15
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "model.safetensors").exists()
    assert re.search(r"tensor\(\[.*\]\) -?\d", done.stdout), done.stdout


def test_own_loop_snippet_runs_after_the_usage_example(tmp_path: Path) -> None:
    usage, own_loop = _blocks("python")[:2]
    check = "\nassert net.head.reject.weight.grad is not None and loss.ndim == 0\nprint('ok')"
    done = subprocess.run(
        [sys.executable, "-c", usage + own_loop + check],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


def test_ci_runs_the_readme_test_command() -> None:
    first, second = (b.strip() for b in _blocks("bash")[:2])
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert second in ci, "the last line of .ci/run must be README's test command"
    assert "torch==2.14.1 torchvision==0.29.1" in first
    assert first.endswith("rejectnet demo")
