"""Reports are read through report.interfaces: no import cycle in the package."""

from __future__ import annotations

from pathlib import Path

from tests.report.conftest import _imports

ROOT = Path(__file__).resolve().parents[2]


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
