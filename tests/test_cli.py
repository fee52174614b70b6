"""The console command: --version, the demo end to end, and ``bench run`` / ``mnist`` /
``cifar10`` / ``clinc150`` (config file and flags, --help, one clear line per bad input)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rejectnet import __version__
from rejectnet.cli import main
from tests.bench.conftest import SMOKE_TOML, write_image_folder, write_tiny_npz


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == __version__


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_unknown_command() -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_demo_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in out[2:]}
    assert set(rows) == {"msp", "oe", "rejectnet"}
    # columns: ID acc, then (AUROC, FPR95) for photo, letters, noise, mixed
    for values in rows.values():
        assert len(values) == 9 and values[0] > 90.0
    assert rows["rejectnet"][7] > rows["msp"][7], "rejectnet must beat max-softmax on the mix"


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    write_tiny_npz(tmp_path)
    (tmp_path / "bench.toml").write_text(SMOKE_TOML)
    return tmp_path


def test_help_explains_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    from rejectnet.bench import FIELDS, METHODS

    with pytest.raises(SystemExit) as info:
        main(["bench", "run", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for table, keys in FIELDS.items():
        assert f"[{table}]" in text
        assert all(f"  {key}: " in text for key in keys)
    assert all(f"  {name}: " in text for name in METHODS)
    assert "resolved against the folder of that file" in text


def test_run_from_a_config_file(tiny: Path) -> None:
    out = tiny / "out"
    code = main(["bench", "run", str(tiny / "bench.toml"), "--out", str(out), "--quiet",
                 "--methods", "msp,rejectnet", "--no-plots"])  # fmt: skip
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"msp", "rejectnet", "_meta"}
    assert not (out / "roc.png").exists()


def test_run_from_flags_only(
    tiny: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tiny)  # flag paths are relative to the working directory
    code = main(["bench", "run", "--id", "id.npz", "--outliers", "pool.npz", "--ood",
                 "far=far.npz", "--ood", "near=near.npz", "--preset", "smoke", "--methods",
                 "msp,oe", "--out", "out", "--no-plots"])  # fmt: skip
    assert code == 0
    results = json.loads((tiny / "out" / "results.json").read_text())
    assert set(results["msp"]["ood"]) == {"far", "near", "mixed"}
    captured = capsys.readouterr()
    assert "[1/3] seed 0: stage one" in captured.err and "ETA" in captured.err
    assert "msp" in captured.out  # the summary table


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[data]\nid = "id.npz"\nidd = 1\n[data.ood]\nfar = "far.npz"\n',
         "unknown key 'idd' in [data]; valid keys: channels, id, image_size, ood, outliers"),
        ('[data]\nid = "missing.npz"\n[data.ood]\nfar = "far.npz"\n',
         "[data] id: path"),
        ('[data]\nid = "far.npz"\n[data.ood]\nfar = "far.npz"\n[train]\npreset = "smoke"\n',
         "lacks ['x_train', 'y_train', 'y_test']"),
        ('[data]\nid = "id.npz"\n[data.ood]\nfar = "id.npz"\n[model]\nname = "resnet"\n'
         '[train]\npreset = "smoke"\n', "unknown model 'resnet'"),
        ('[data]\nid = "id.npz"\n[data.ood]\nfar = "far.npz"\n[model]\nname = "nomod:make"\n'
         '[train]\npreset = "smoke"\n', "cannot import 'nomod'"),
        ("[data\n", "is not valid TOML"),
    ],
)  # fmt: skip
def test_bad_configs_exit_nonzero_with_one_line(
    tiny: Path, toml: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tiny / "bad.toml"
    cfg.write_text(toml)
    assert main(["bench", "run", str(cfg), "--out", str(tiny / "out"), "--quiet"]) == 2
    err = _one_line_error(capsys)
    assert err.startswith("rejectnet bench run: error: ") and message in err


def test_empty_class_folder_exits_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_image_folder(tmp_path / "imgs")
    (root / "test" / "class_1").joinpath("extra").mkdir()
    empty = root / "train" / "zebra"
    empty.mkdir()
    np.savez(tmp_path / "far.npz", x_test=np.zeros((4, 8, 8), np.uint8))
    code = main(["bench", "run", "--id", str(root), "--ood", f"far={tmp_path / 'far.npz'}",
                 "--out", str(tmp_path / "out"), "--quiet"])  # fmt: skip
    assert code == 2
    err = _one_line_error(capsys)
    assert str(empty) in err and "is empty" in err


def test_missing_config_and_no_id(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "run", str(tiny / "nope.toml"), "--out", "x", "--quiet"]) == 2
    assert "does not exist" in _one_line_error(capsys)
    with pytest.raises(SystemExit):
        main(["bench", "run", "--out", "x"])
    assert "needs a CONFIG file or --id" in capsys.readouterr().err


def test_clinc150_subcommand_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["bench", "--help"])
    assert info.value.code == 0 and "clinc150" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["bench", "clinc150", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "rejectnet bench clinc150" in text
    assert all(flag in text for flag in ("--data-dir", "--out", "--seeds", "--methods"))


def test_clinc150_missing_data_dir_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-folder"
    code = main(["bench", "clinc150", "--data-dir", str(missing), "--out", str(tmp_path / "o"),
                 "--quiet"])  # fmt: skip
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and captured.out == ""
    assert len(lines) == 1 and lines[0].startswith("rejectnet bench clinc150: error: ")
    assert "clinc150.json" in lines[0] and str(missing) in lines[0]


def test_mnist_and_cifar10_share_one_handler(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = {"mnist": "fashion_mnist.npz is missing and no --ood", "cifar10": "cifar10.npz"}
    for benchmark, needle in expected.items():
        code = main(["bench", benchmark, "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"),
                     "--quiet"])  # fmt: skip
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1, lines
        assert lines[0].startswith(f"rejectnet bench {benchmark}: error: ") and needle in lines[0]
    with pytest.raises(SystemExit):
        main(["bench", "mnist", "--data-dir", str(tmp_path), "--k", "1,x"])
    assert "--k must be a comma list of integers" in capsys.readouterr().err
