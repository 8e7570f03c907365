"""The layout's rules, read from the source: no import cycles, and a pure core.

Every ``import`` counts, also one inside a function (a lazy import still ties the two modules).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "schemas", "sinks", "infra")

# The pure core: process / tick / drain, deterministic in event time.
CORE = "pipeline.detect"
# What the core may import from the project: itself, the wire formats it reads, the event vocabulary and the
# sentiment scorer (pure functions); and, from ``pipeline.detect.rules`` only, the settings' declarations.
CORE_MAY_IMPORT = ("pipeline.detect", "pipeline.wire.records", "pipeline.vocabulary", "pipeline.sentiment")
CORE_SETTINGS_SEAM = "pipeline.detect.rules"
# Libraries the core may use besides the standard library (no I/O, no clock).
CORE_LIBRARIES = {"orjson"}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imported_names(module: str, path: Path) -> set[str]:
    """Every dotted name ``module`` imports (absolute; relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names.update(f"{base}.{alias.name}" for alias in node.names)
            names.add(base)
    return names


def _project_module(name: str) -> str | None:
    """The project module ``name`` refers to (a module, or a name inside one), if any."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets = {_project_module(name) for name in _imported_names(module, path)}
        # ``from pipeline import x`` names the package too; a package's own __init__ is not an edge to itself.
        graph[module] = {t for t in targets if t and t != module and not module.startswith(t + ".")}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_find_cycles_names_the_modules_of_each_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": set()}
    assert find_cycles(graph) == [["a", "b", "c"], ["d", "e"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_project_modules_import_each_other_without_cycles() -> None:
    assert len(MODULES) > 80  # the walk found the project
    assert find_cycles(import_graph()) == []


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_pure_core_imports_only_itself_wire_formats_and_vocabulary() -> None:
    core = {m: p for m, p in MODULES.items() if _under(m, (CORE,))}
    assert len(core) > 15
    wrong: list[str] = []
    for module, path in sorted(core.items()):
        for name in sorted(_imported_names(module, path)):
            top = name.split(".")[0]
            if top == "__future__" or top in sys.stdlib_module_names or top in CORE_LIBRARIES:
                continue
            target = _project_module(name)
            if target and _under(target, CORE_MAY_IMPORT):
                continue
            if target == "pipeline.settings" and module == CORE_SETTINGS_SEAM:
                continue
            if target == "pipeline" and module.startswith("pipeline."):
                continue  # ``from pipeline.x import y`` also names the package
            wrong.append(f"{module} imports {name}")
    assert wrong == []


def test_what_the_core_imports_imports_no_runtime_either() -> None:
    # The wire formats, the vocabulary and the scorer the core reads are pure too; the settings' module
    # declares (pydantic) and parses, and reaches nothing else of the project when imported.
    allowed = {"pydantic", "pydantic_settings", *CORE_LIBRARIES}
    for module, path in MODULES.items():
        if not (_under(module, CORE_MAY_IMPORT) and not _under(module, (CORE,))) and module != "pipeline.settings":
            continue
        tree = ast.parse(path.read_text())
        top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        for node in top_level:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                ok = (
                    node.__class__ is ast.ImportFrom and node.level > 0
                    or top == "__future__" or top in sys.stdlib_module_names or top in allowed
                    or _under(name, CORE_MAY_IMPORT)
                    or (name == "schemas")
                )  # fmt: skip
                assert ok, f"{module} imports {name} at module level"


# Development and test infrastructure (a ClickHouse server for the tests, a local cluster): only the tests
# and the tools (``pipeline.tools``: the benchmarks start a server when given none) may use it.
DEV_INFRA = "infra"
MAY_USE_DEV_INFRA = ("infra", "pipeline.tools")


def test_shipped_code_imports_no_development_infrastructure() -> None:
    graph = import_graph()
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if not _under(module, MAY_USE_DEV_INFRA)
        for target in targets
        if _under(target, (DEV_INFRA,))
    )
    assert wrong == []


def test_the_runtime_is_the_only_part_that_imports_faust() -> None:
    # Faust, mode and aiokafka stay behind the worker and its adapter (pipeline.runtime).
    wrong = []
    for module, path in sorted(MODULES.items()):
        if _under(module, ("pipeline.runtime",)):
            continue
        for name in _imported_names(module, path):
            if name.split(".")[0] in {"faust", "mode", "aiokafka"}:
                wrong.append(f"{module} imports {name}")
    assert wrong == []
