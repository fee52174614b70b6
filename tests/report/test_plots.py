"""rejectnet.report.plots: figures without pyplot's global state, PNG files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from rejectnet import RejectHead
from rejectnet.evaluation import evaluate
from rejectnet.plotting import PLOT_NAMES, figures, plot_reports
from tests.report.conftest import _data, _reports

pytest.importorskip(
    "matplotlib", reason='plotting needs matplotlib (pip install "rejectnet[plot]")'
)

ROOT = Path(__file__).resolve().parents[2]


def test_plots_written(tmp_path: object) -> None:
    from pathlib import Path

    torch.manual_seed(0)
    net = RejectHead.wrap(nn.Linear(4, 3), k=2)
    id_loader, ood = _data()
    a = evaluate(net, id_loader, ood, n_runs=1, name="a")
    b = evaluate(net, id_loader, ood, "max", n_runs=1, name="b")
    paths = a.plot(Path(str(tmp_path)) / "plots", others=[b])
    names = sorted(p.name for p in paths)
    assert names == ["error_vs_tpr.png", "risk_coverage.png", "roc.png", "score_histograms.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_figures_have_a_panel_per_set_and_per_method() -> None:
    figs = figures(_reports(6, n_sets=3))  # type: ignore[arg-type]
    assert list(figs) == list(PLOT_NAMES)
    assert len(figs["roc"].axes) == 3 + 1  # three sets and the mixed one
    assert len(figs["roc"].axes[0].get_lines()) == 6 + 1  # a curve per method + the diagonal
    hist = figs["score_histograms"]
    visible = [ax for ax in hist.axes if ax.axison]
    assert len(hist.axes) == 8 and len(visible) == 6  # a 2 x 4 grid, two cells left empty
    assert [ax.get_title().split(":")[0] for ax in visible] == [f"m{i}" for i in range(6)]
    assert len(figs["risk_coverage"].axes[0].get_lines()) == 6


def test_plotting_leaves_matplotlib_global_state_alone() -> None:
    code = (
        "import sys, matplotlib\n"
        "before = matplotlib.get_backend(), matplotlib.rcParams['backend']\n"
        "import torch\n"
        "from torch import nn\n"
        "from rejectnet import RejectHead, evaluate\n"
        "from rejectnet.plotting import figures\n"
        "net = RejectHead.wrap(nn.Linear(4, 3), k=2)\n"
        "r = evaluate(net, [(torch.randn(20, 4), torch.randint(0, 3, (20,)))],"
        " {'far': [torch.randn(20, 4) + 4]}, n_runs=1)\n"
        "figures([r]); r.to_html()\n"
        "assert (matplotlib.get_backend(), matplotlib.rcParams['backend']) == before, before\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
        "print('ok')\n"
    )
    env_backend = {"MPLBACKEND": "svg"}  # a user's choice that must survive
    import os

    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env_backend, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_plots_written_are_png(tmp_path: Path) -> None:
    paths = plot_reports(_reports(2), tmp_path / "plots")  # type: ignore[arg-type]
    assert [p.name for p in paths] == [f"{n}.png" for n in PLOT_NAMES]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
