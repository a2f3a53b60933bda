"""The walls between the layers and the absence of import circles, read from the source.

Every module of ``src/strokelrp`` is parsed; every ``import`` / ``from ... import`` in it (at
module level, inside functions and under ``TYPE_CHECKING``) is an edge to the project module
it names (``from strokelrp.x import y`` names ``strokelrp.x.y`` when that is a module, else
``strokelrp.x``; relative imports are resolved). The walls (docs/architecture.md):

- ``lrp/`` imports nothing of the project but ``lrp/``, ``errors`` and ``config``;
- ``analysis/`` imports neither ``train/``, ``data/``, ``pipeline/``, ``report/`` nor
  ``run_files``, and runs no network (no ``attribution``, ``inference``, ``trust/``,
  ``model/``, ``families/``, ``device``, LRP engine);
- ``report/`` imports neither ``train/`` nor ``pipeline/`` nor the run-folder readers;
- the CLI imports the public API (``strokelrp``'s own names) and ``pipeline/`` only;
- no circle: no module reaches itself through its imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import strokelrp

ROOT = Path(strokelrp.__file__).parent

ANALYSIS_RUNS_A_NETWORK_EXCEPTIONS = {
    # issue 20: assess.py still runs the model (attribute, the ablation, perturbation curves);
    # it moves to strokelrp/trust/ there, and this entry goes with it. The one exception.
    "strokelrp.analysis.assess",
}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, dict[str, set[str]]]:
    """Module -> {project module it imports -> the names imported from it (empty for a plain
    ``import``)}, over every module under ``root`` (the ``strokelrp`` package folder)."""
    paths = {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, dict[str, set[str]]] = {}
    for module, path in paths.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges: dict[str, set[str]] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "strokelrp":
                        edges.setdefault(alias.name, set())
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if source.split(".")[0] != "strokelrp":
                    continue
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    if sub in paths:
                        edges.setdefault(sub, set())
                    else:
                        edges.setdefault(source, set()).add(alias.name)
        graph[module] = edges
    return graph


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def wall_breaches(graph: dict[str, dict[str, set[str]]]) -> list[str]:
    """Every import that crosses a wall, as ``importer -> imported`` lines."""
    p = "strokelrp."
    breaches = []
    for module, edges in sorted(graph.items()):
        for target, names in sorted(edges.items()):
            why = None
            if _within(module, (p + "lrp",)):
                if not _within(target, (p + "lrp", p + "errors", p + "config")):
                    why = "lrp/ imports only lrp/, errors and config"
            elif _within(module, (p + "analysis",)):
                lower = (p + "train", p + "data", p + "pipeline", p + "report", p + "run_files")
                runs = (
                    *(p + m for m in ("attribution", "inference", "trust", "model")),
                    *(p + m for m in ("families", "device", "lrp.engine", "lrp.graph")),
                )
                if _within(target, lower):
                    why = "analysis/ takes arrays: no train/, data/, pipeline/, report/, run_files"
                elif _within(target, runs) and module not in ANALYSIS_RUNS_A_NETWORK_EXCEPTIONS:
                    why = "analysis/ runs no network"
            elif _within(module, (p + "report",)):
                if _within(target, (p + "train", p + "pipeline")):
                    why = "report/ imports neither train/ nor pipeline/"
                elif names & {"RunDir", "read_csv", "read_explanation"}:
                    why = "report/ reads no run folder"
            elif module == p + "cli" and not (
                target == "strokelrp" or _within(target, (p + "pipeline",))
            ):
                why = "the CLI imports the public API and pipeline/ only"
            if why:
                breaches.append(f"{module} -> {target}: {why}")
    return breaches


def circles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """The import circles: one list of modules per strongly connected component with more
    than one module (or a module importing itself), each sorted (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """A hand-made package: plain, from, relative, function-level and TYPE_CHECKING imports
    each give their edge, and a circle through a function-level import is found."""
    pkg = tmp_path / "strokelrp"
    (pkg / "lrp").mkdir(parents=True)
    (pkg / "analysis").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("")
    (pkg / "lrp" / "__init__.py").write_text("")
    (pkg / "lrp" / "engine.py").write_text(
        "from . import rules\nfrom ..errors import E\nimport strokelrp.analysis.table\n"
    )
    (pkg / "lrp" / "rules.py").write_text("def f():\n    from strokelrp.lrp import engine\n")
    (pkg / "analysis" / "__init__.py").write_text("")
    (pkg / "analysis" / "table.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from strokelrp.train import x\n"
    )
    graph = import_graph(pkg)
    assert graph["strokelrp.lrp.engine"] == {
        "strokelrp.lrp.rules": set(),
        "strokelrp.errors": {"E"},
        "strokelrp.analysis.table": set(),
    }
    assert graph["strokelrp.lrp.rules"] == {"strokelrp.lrp.engine": set()}
    assert graph["strokelrp.analysis.table"] == {"strokelrp.train": {"x"}}
    assert circles(graph) == [["strokelrp.lrp.engine", "strokelrp.lrp.rules"]]
    assert wall_breaches(graph) == [
        "strokelrp.analysis.table -> strokelrp.train: analysis/ takes arrays: no train/, "
        "data/, pipeline/, report/, run_files",
        "strokelrp.lrp.engine -> strokelrp.analysis.table: lrp/ imports only lrp/, errors "
        "and config",
    ]


def test_the_layers_keep_their_walls() -> None:
    graph = import_graph()
    assert "strokelrp.cli" in graph and "strokelrp.lrp.engine" in graph
    assert wall_breaches(graph) == []


def test_no_import_circle() -> None:
    assert circles(import_graph()) == []


def test_the_one_exception_still_needs_its_excuse() -> None:
    """An exception that no longer runs a network is dropped from the list (issue 20)."""
    graph = import_graph()
    for module in ANALYSIS_RUNS_A_NETWORK_EXCEPTIONS:
        assert module in graph, module
        assert any(t.startswith("strokelrp.attribution") for t in graph[module]), module


def test_every_name_the_cli_may_import_resolves() -> None:
    """The public API and the pipeline's lazy exports name existing objects (the CLI imports
    them only when a command runs)."""
    import strokelrp.pipeline

    for package in (strokelrp, strokelrp.pipeline):
        for name in package.__all__:
            assert getattr(package, name) is not None, (package.__name__, name)
