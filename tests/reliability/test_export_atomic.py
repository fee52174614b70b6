"""``export_onnx`` and ``export_aoti`` are atomic (issue 22, item 8): a failed or killed
export loses nothing.

An export over a good ``.onnx`` file that dies midway (the exporter writes half a file,
then raises; or the process gets ``SIGKILL`` mid-write or just before the rename) must
leave the old file byte for byte as it was (the probe found a truncated file, which
``onnx.load`` accepts when empty); an exception leaves no temporary file behind; a
successful export replaces the file whole.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import rejectnet
from rejectnet.aoti import _find_compiler
from tests.conftest import ReliabilityCounts

pytest.importorskip("onnxscript")


def _net() -> rejectnet.RejectHead:
    torch.manual_seed(0)
    net = rejectnet.RejectHead.wrap(nn.Linear(8, 3), k=2).eval()
    net.calibrate([torch.randn(64, 8)], coverage=0.9)
    return net


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_interrupted_export_leaves_the_old_file(
    error: type[BaseException],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reliability: ReliabilityCounts,
) -> None:
    reliability.fault()
    net = _net()
    out = tmp_path / "model.onnx"
    rejectnet.export_onnx(net, out, torch.randn(4, 8))
    good = out.read_bytes()
    assert len(good) > 100

    def dies_midway(model: Any, args: Any, f: str, **kwargs: Any) -> None:
        Path(f).write_bytes(good[: len(good) // 2])
        raise error("killed midway")

    monkeypatch.setattr(torch.onnx, "export", dies_midway)
    with pytest.raises(error, match="killed midway"):
        rejectnet.export_onnx(net, out, torch.randn(4, 8))
    assert out.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporary left


def test_export_replaces_the_file_whole(tmp_path: Path, reliability: ReliabilityCounts) -> None:
    reliability.case(2)
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "model.onnx"
    out.write_bytes(b"old contents")
    assert rejectnet.export_onnx(_net(), out, torch.randn(4, 8)) == out
    model = onnx.load(str(out))
    assert [i.name for i in model.graph.input] == ["images"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    with pytest.raises(FileNotFoundError):
        rejectnet.export_onnx(_net(), tmp_path / "missing" / "m.onnx", torch.randn(4, 8))


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL")
@pytest.mark.parametrize("when", ["mid_write", "before_rename"])
def test_sigkill_during_export_leaves_the_old_file(
    when: str, tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    reliability.fault()
    onnx = pytest.importorskip("onnx")
    net = _net()
    out = tmp_path / "model.onnx"
    rejectnet.export_onnx(net, out, torch.randn(4, 8))
    good = out.read_bytes()
    pid = os.fork()
    if pid == 0:  # the child: export over the good file and die by SIGKILL midway
        try:
            if when == "mid_write":

                def half_then_killed(model: Any, args: Any, f: str, **kwargs: Any) -> None:
                    Path(f).write_bytes(good[: len(good) // 2])
                    _die()

                torch.onnx.export = half_then_killed  # type: ignore[assignment]
            else:
                os.replace = lambda src, dst: _die()  # type: ignore[assignment,misc]
            rejectnet.export_onnx(net, out, torch.randn(4, 8))
        finally:
            os._exit(3)  # only reached if the kill did not happen
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    assert out.read_bytes() == good
    assert [i.name for i in onnx.load(str(out)).graph.input] == ["images"]
    # a killed process cannot clean up: its temporary file is hidden, beside the model
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "model.onnx")
    assert len(left) == 1 and left[0].startswith(".model.onnx.") and left[0].endswith(".tmp")


@pytest.mark.skipif(_find_compiler() is None, reason="export_aoti needs a C++ compiler")
@pytest.mark.parametrize("how", ["error", "sigkill"])
def test_interrupted_aoti_export_leaves_the_old_package(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reliability: ReliabilityCounts
) -> None:
    """The same for ``export_aoti``, which let inductor write the package in place.

    The compiler is replaced by one that writes half a package, then raises or gets
    ``SIGKILL``: no compiling needed to show that the old package survives.
    """
    import torch._inductor

    reliability.fault()
    out = tmp_path / "model.pt2"
    good = b"PK-the-old-package" * 1000
    out.write_bytes(good)

    def dies_midway(program: Any, package_path: Any, **kwargs: Any) -> None:
        package_path.write(good[: len(good) // 2])
        package_path.flush()
        if how == "sigkill":
            _die()
        raise RuntimeError("compiler killed midway")

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", dies_midway)
    if how == "error":
        with pytest.raises(RuntimeError, match="killed midway"):
            rejectnet.export_aoti(_net(), out, torch.randn(4, 8))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt2"]
    else:
        pid = os.fork()
        if pid == 0:
            try:
                rejectnet.export_aoti(_net(), out, torch.randn(4, 8))
            finally:
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    assert out.read_bytes() == good


def test_a_folder_in_the_way_is_refused_before_exporting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reliability: ReliabilityCounts
) -> None:
    """A folder at the destination raised after the whole export (``os.replace``)."""
    import torch._inductor

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the export ran before the destination was checked")

    monkeypatch.setattr(torch.onnx, "export", never)
    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", never)
    calls = [(tmp_path / "model.onnx", rejectnet.export_onnx)]
    if _find_compiler() is not None:
        calls.append((tmp_path / "model.pt2", rejectnet.export_aoti))
    for folder, export in calls:
        reliability.case()
        folder.mkdir()
        (folder / "keep.txt").write_text("keep")
        with pytest.raises(IsADirectoryError, match=r"path .*model\.\w+' is a folder"):
            export(_net(), folder, torch.randn(4, 8))
        assert [p.name for p in folder.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f, _ in calls)
