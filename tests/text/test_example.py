"""examples/text_classifier.py runs end to end with --smoke (synthetic words)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.text._support import NEEDS_DICTS, dict_batches_supported

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "text_classifier.py"


@pytest.mark.skipif(not dict_batches_supported(), reason=NEEDS_DICTS)
def test_text_classifier_smoke(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    aurocs = [float(v) for v in re.findall(r"AUROC \([^)]*\): (\d+\.\d+)%", out)]
    assert len(aurocs) == 2 and aurocs[1] >= 90.0, out
    acc = [float(v) for v in re.findall(r"in-scope accuracy (\d+\.\d+)%", out)]
    assert len(acc) == 2 and min(acc) >= 90.0, out  # stage one learns the 4 intents
    assert "saved and loaded: same predictions True" in out
    assert (tmp_path / "intent-rejectnet.safetensors").exists()
    assert (tmp_path / "tokenizer.json").exists()


def test_needs_a_mode() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "give --smoke or --data-dir" in done.stderr
