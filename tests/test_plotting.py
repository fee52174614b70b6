"""rejectnet.plotting: figures without pyplot's global state; no import cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from rejectnet import RejectHead, evaluate
from rejectnet.plotting import PLOT_NAMES, figures, plot_reports

pytest.importorskip(
    "matplotlib", reason='plotting needs matplotlib (pip install "rejectnet[plot]")'
)

ROOT = Path(__file__).resolve().parents[1]


def _reports(n_methods: int, n_sets: int = 2) -> list[object]:
    torch.manual_seed(0)
    net = RejectHead.wrap(nn.Linear(4, 3), k=2)
    id_test = [(torch.randn(40, 4), torch.randint(0, 3, (40,)))]
    ood = {f"set{i}": [torch.randn(30, 4) + i + 1] for i in range(n_sets)}
    scores = ["sum", "max", "entropy", "weighted", "entropy_diff"]
    return [
        evaluate(net, id_test, ood, scores[i % 5], n_runs=1, name=f"m{i}") for i in range(n_methods)
    ]


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


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):  # every import, also inside functions and TYPE_CHECKING
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m == "rejectnet" or m.startswith("rejectnet.")}


def test_no_import_cycles_in_the_package() -> None:
    files = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (ROOT / "rejectnet").rglob("*.py")
    }
    graph = {m: {i for i in _imports(p, m) if i in files and i != m} for m, p in files.items()}
    # importing "rejectnet.a.b" also runs "rejectnet.a" (a package __init__), but not the
    # other way round; a package importing its own submodules is not a cycle
    for m in list(graph):
        graph[m] = {i for i in graph[m] if not m.startswith(i + ".")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for nxt in sorted(graph[m]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_plotting_and_html_do_not_import_evaluation() -> None:
    # tables, plots and the HTML page read reports through report.interfaces only
    for mod in ("plots", "html_page", "interfaces", "tables"):
        found = _imports(ROOT / "rejectnet" / "report" / f"{mod}.py", f"rejectnet.report.{mod}")
        for upper in ("evaluation", "report.evaluation", "report.results", "report.protocol"):
            assert f"rejectnet.{upper}" not in found, (mod, found)
        assert "rejectnet.report" not in found, (mod, found)  # the package runs evaluation
