"""`rejectnet bench mnist` (a preset of `bench run`) on tiny synthetic files, smoke preset."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from rejectnet.bench import load_images
from rejectnet.cli import main


def _write_idx(path: Path, x: np.ndarray) -> None:
    header = b"\x00\x00\x08" + bytes([x.ndim]) + struct.pack(f">{x.ndim}I", *x.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + x.astype(np.uint8).tobytes())


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 160
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 30, (n, 8, 8)).astype(np.uint8)
    for c in range(10):  # class c brightens pixel row c % 8
        x[y == c, c % 8, :] = 255
    np.savez(tmp_path / "mnist.npz", x_train=x, y_train=y, x_test=x[:64], y_test=y[:64])
    np.savez(
        tmp_path / "photo_patches.npz", x_train=rng.integers(0, 256, (200, 8, 8), dtype=np.uint8)
    )
    np.savez(
        tmp_path / "fashion_mnist.npz", x_test=rng.integers(0, 256, (50, 8, 8), dtype=np.uint8)
    )
    raw = tmp_path / "KMNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (40, 8, 8)))
    return tmp_path


def test_bench_mnist_smoke(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = data_dir / "out"
    code = main(
        [
            "bench",
            "mnist",
            "--data-dir",
            str(data_dir),
            "--preset",
            "smoke",
            "--out",
            str(out),
            "--ood",
            f"kmnist={data_dir / 'KMNIST'}",
            "--k",
            "1,5",
            "--score",
            "sum,max",
            "--quiet",
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    ablation = {"rejectnet", "rejectnet-max", "rejectnet-k1", "rejectnet-k1-max"}
    methods = {"msp", "energy", "max_logit", "oe", "rejectnet-paper", *ablation}
    assert methods <= set(results) - {"_meta"}
    for name in set(results) - {"_meta"}:
        r = results[name]
        assert 0.0 <= r["id_accuracy"] <= 1.0
        assert set(r["ood"]) == {"fashion", "kmnist", "mixed"}
        for metrics in r["ood"].values():
            assert set(metrics) == {"auroc", "aupr_in", "aupr_out", "fpr95"}
            assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert results["rejectnet"]["score"] == "sum_reject"
    assert results["rejectnet-max"]["score"] == "max_reject"
    assert results["_meta"]["preset"] == "smoke"
    md = (out / "results.md").read_text()
    assert "| rejectnet |" in md and "| oe |" in md and "| msp |" in md
    assert (out / "roc.png").exists() and (out / "risk_coverage.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ood", "nameonly"], "NAME=PATH"),
        (["--k", "a,b"], "--k"),
    ],
)
def test_bench_bad_arguments(
    data_dir: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "mnist", "--data-dir", str(data_dir), "--quiet", *args])
    assert message in capsys.readouterr().err


def test_bench_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "mnist", "--data-dir", str(tmp_path), "--quiet"]) == 2
    assert "fashion_mnist.npz" in capsys.readouterr().err
    np.savez(tmp_path / "fashion_mnist.npz", x_test=np.zeros((2, 8, 8), np.uint8))
    assert main(["bench", "mnist", "--data-dir", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "mnist.npz" in err and len(err.strip().splitlines()) == 1


def test_bench_bad_score(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "mnist", "--data-dir", str(data_dir), "--score", "best", "--quiet"]) == 2
    assert "entropy_diff" in capsys.readouterr().err


def test_load_images_npz_and_idx(data_dir: Path) -> None:
    assert load_images(data_dir / "fashion_mnist.npz").shape == (50, 8, 8)
    assert load_images(data_dir / "KMNIST").shape == (40, 8, 8)
    with pytest.raises(FileNotFoundError, match="train-images"):
        load_images(data_dir / "KMNIST", "train")
    with pytest.raises(ValueError, match="x_train"):
        load_images(data_dir / "fashion_mnist.npz", "train")
    bad = data_dir / "bad"
    bad.mkdir()
    (bad / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 9, 8, 8))
    with pytest.raises(ValueError, match="truncated"):
        load_images(bad)
