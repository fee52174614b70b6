"""Every script in examples/ runs end to end with --smoke (tiny synthetic data)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TESTED = {
    "calibrate_and_deploy.py",
    "text_classifier.py",  # tested in tests/text/test_example.py
    "custom_outliers.py",
    "evaluation_report.py",
    "train_ddp.py",
    "wrap_timm.py",
    "wrap_torchvision.py",
}


def _run(script: str, out: Path, *extra: str) -> str:
    # One intra-op thread per script: pytest-xdist already runs scripts side by side, and
    # oversubscribed OpenMP threads make tiny CPU workloads many times slower.
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


def _auroc(stdout: str) -> float:
    found = re.findall(r"AUROC[^:\n]*: (\d+\.\d+)%", stdout)
    assert found, stdout
    value = float(found[-1])
    assert 0.0 <= value <= 100.0
    return value


def test_every_example_is_tested() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    integrations = {"own_training_loop.py", "lightning_finetune.py", "accelerate_finetune.py"}
    assert scripts == TESTED | integrations, (
        "give each script in examples/ a test here, and list it in TESTED"
    )


def test_wrap_timm(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    stdout = _run("wrap_timm.py", tmp_path)
    assert "head: 'fc', C=10, k=5" in stdout
    _auroc(stdout)
    assert (tmp_path / "resnet18-reject.safetensors").is_file()


def test_wrap_torchvision(tmp_path: Path) -> None:
    pytest.importorskip("torchvision")
    stdout = _run("wrap_torchvision.py", tmp_path)
    for line in (
        "resnet18: head 'fc', logits (2, 15)",
        "mobilenet_v3_small: head 'classifier.3', logits (2, 15)",
        "efficientnet_b0: head 'classifier.1', logits (2, 15)",
        "automatic head search picked the wrong layer",
        "MyClassifier: head 'out', logits (2, 15)",
    ):
        assert line in stdout, stdout
    _auroc(stdout)
    assert (tmp_path / "resnet18-reject.safetensors").is_file()


def test_custom_outliers(tmp_path: Path) -> None:
    stdout = _run("custom_outliers.py", tmp_path)
    assert len(list((tmp_path / "outlier_images").glob("*.png"))) == 200
    assert re.search(r"outliers: \d+ \(200, \d+, 200: folder, blended pairs", stdout), stdout
    _auroc(stdout)
    assert (tmp_path / "custom-outliers.safetensors").is_file()


def test_calibrate_and_deploy(tmp_path: Path) -> None:
    stdout = _run("calibrate_and_deploy.py", tmp_path)
    assert re.search(r"coverage: threshold \S+ \(coverage\)", stdout), stdout
    assert re.search(r"TPR: +threshold \S+ \(tpr\)", stdout), stdout
    assert re.search(r"risk: +(threshold|not achievable)", stdout), stdout
    labels = re.search(r"labels \(-1 = rejected\): \[(.*)\]", stdout)
    assert labels is not None, stdout
    assert all(-1 <= int(v) < 10 for v in labels.group(1).split(","))
    assert "same class logits: True" in stdout
    assert (tmp_path / "model.safetensors").is_file()


def test_evaluation_report(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    stdout = _run("evaluation_report.py", tmp_path)
    for name in ("msp", "energy", "oe", "rejectnet/sum_reject", "rejectnet/max_reject"):
        assert re.search(rf"^  {re.escape(name)} +AUROC +\d+\.\d+", stdout, flags=re.M), stdout
    report = (tmp_path / "report.md").read_text()
    assert "| method | score | ID acc | OOD set | AUROC" in report
    assert "| rejectnet/sum_reject | sum_reject |" in report
    for png in ("roc.png", "score_histograms.png", "error_vs_tpr.png", "risk_coverage.png"):
        assert (tmp_path / png).stat().st_size > 0
    assert (tmp_path / "results.json").is_file()


def test_train_ddp(tmp_path: Path) -> None:
    # one process here; under torchrun it is checked by tests/distributed/test_ddp.py's
    # workers (the same trainers, initialised from torchrun's environment variables)
    stdout = _run("train_ddp.py", tmp_path)
    assert "1 process(es)" in stdout
    _auroc(stdout)
    assert (tmp_path / "ddp-reject.safetensors").is_file()
