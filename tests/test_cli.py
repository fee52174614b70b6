"""The console command, including the demo end to end."""

from __future__ import annotations

import pytest

from rejectnet import __version__
from rejectnet.cli import main


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
