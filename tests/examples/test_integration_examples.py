"""The bring-your-own-loop examples run end to end with --smoke, and their models work.

``examples/own_training_loop.py`` (plain PyTorch), ``examples/lightning_finetune.py``
(one process, and ``strategy="ddp"`` on 2 CPU processes with gloo) and
``examples/accelerate_finetune.py`` (gradient accumulation, bfloat16).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TESTED = {"own_training_loop.py", "lightning_finetune.py", "accelerate_finetune.py"}


def _run(script: str, out: Path, *extra: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--smoke", "--out", str(out), *extra],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _number(pattern: str, stdout: str) -> float:
    found = re.findall(pattern, stdout)
    assert found, f"{pattern!r} not in:\n{stdout}"
    return float(found[-1])


def _check_rejection(stdout: str) -> None:
    """At the threshold calibrated for 95% coverage, outliers are rejected, the rest kept."""
    rejected_out = _number(r"rejected at the threshold.*: outliers (\d+\.\d)%", stdout)
    rejected_in = _number(r"rejected at the threshold.*in-distribution (\d+\.\d)%", stdout)
    assert rejected_out >= 90.0 and rejected_in <= 15.0, stdout


def test_every_integration_example_exists() -> None:
    names = {p.name for p in EXAMPLES.glob("*.py")}
    assert names >= TESTED
    assert any("lightning" in n for n in TESTED) and any("accelerate" in n for n in TESTED)


@pytest.mark.parametrize("extra", [(), ("--amp",)])
def test_own_training_loop(tmp_path: Path, extra: tuple[str, ...]) -> None:
    stdout = _run("own_training_loop.py", tmp_path, *extra)
    before = _number(r"before fine-tuning.*outliers on a reject unit (\d+\.\d)%", stdout)
    after = _number(r"after fine-tuning.*outliers on a reject unit (\d+\.\d)%", stdout)
    # the fine-tuning taught the reject units: far more held-out outliers land on them
    assert after >= before + 30.0, stdout
    assert _number(r"after fine-tuning.*AUROC (\d+\.\d+)%", stdout) >= 99.0
    _check_rejection(stdout)
    assert (tmp_path / "own-loop.safetensors").is_file()


def _lightning(tmp_path: Path, *extra: str) -> str:
    if importlib.util.find_spec("lightning") is None:
        pytest.skip("the lightning extra is not installed (pip install -e '.[lightning]')")
    stdout = _run("lightning_finetune.py", tmp_path, *extra)
    assert "net back in eval mode" in stdout  # the mode the user left it in
    assert _number(r"AUROC[^:\n]*: (\d+\.\d+)%", stdout) >= 99.0
    assert _number(r"val accuracy (\d+\.\d+)%", stdout) >= 95.0
    assert _number(r"threshold \(sum_reject, 95% coverage\): (\d+\.\d+)", stdout) > 0.0
    assert (tmp_path / "lightning-reject.safetensors").is_file()
    return stdout


def test_lightning_one_process(tmp_path: Path) -> None:
    stdout = _lightning(tmp_path)
    # 512 samples / 32 = 16 steps per epoch, 2 epochs
    assert "1 process(es), 32 optimizer steps" in stdout, stdout


def test_lightning_ddp_two_cpu_processes(tmp_path: Path) -> None:
    stdout = _lightning(tmp_path, "--devices", "2", "--strategy", "ddp")
    # each process reads its own half of the data: half the steps per epoch
    assert "2 process(es), 16 optimizer steps" in stdout, stdout


@pytest.mark.parametrize(
    ("extra", "steps"),
    [(("--accumulate", "2"), 16), (("--precision", "bf16", "--accumulate", "1"), 32)],
)
def test_accelerate(tmp_path: Path, extra: tuple[str, ...], steps: int) -> None:
    if importlib.util.find_spec("accelerate") is None:
        pytest.skip("the accelerate extra is not installed (pip install -e '.[accelerate]')")
    stdout = _run("accelerate_finetune.py", tmp_path, *extra)
    assert f"32 micro-batches, {steps} optimizer steps" in stdout, stdout
    assert _number(r"AUROC[^:\n]*: (\d+\.\d+)%", stdout) >= 99.0
    _check_rejection(stdout)
    assert (tmp_path / "accelerate-reject.safetensors").is_file()
