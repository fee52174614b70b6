"""The optional pytorch-ood dependency (rejectnet.peers.backend)."""

from __future__ import annotations

import builtins
import importlib.util
from typing import Any

import pytest

from rejectnet.peers import backend


def test_is_available_follows_the_installed_package() -> None:
    assert backend.is_available() == (importlib.util.find_spec("pytorch_ood") is not None)


def test_a_missing_pytorch_ood_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_pytorch_ood(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("pytorch_ood"):
            raise ImportError("No module named 'pytorch_ood'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pytorch_ood)
    with pytest.raises(ImportError, match=r'pip install "rejectnet\[peers\]"'):
        backend.detectors()


def test_detectors_is_pytorch_oods_detector_module() -> None:
    pod = pytest.importorskip("pytorch_ood.detector")
    assert backend.detectors() is pod
