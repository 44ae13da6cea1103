"""The layout of docs/ARCHITECTURE.md, checked by parsing the imports: no cycle, the arrows point one way.

Every `import` and `from ... import` of the package counts, also those inside functions, except the ones under
`if TYPE_CHECKING:` (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "teaching"
MAX_LINES = 450

# What each part may import from the package (besides itself and teaching.errors). A part is a module or package.
ALLOWED: dict[str, set[str]] = {
    "teaching.cams": set(),  # the engine imports only torch, NumPy and teaching.errors
    "teaching.images": set(),
    "teaching.labels": set(),
    "teaching.render": set(),
    "teaching.metrics": set(),
    "teaching.quiz": {"teaching.galleries"},
    "teaching.galleries": set(),
    "teaching.models": {"teaching.cams", "teaching.labels"},
    "teaching.api": {"teaching.cams", "teaching.images", "teaching.labels", "teaching.models"},
    # the Ray engine of explain: the local run's batch call and files, nothing of the front ends (Ray itself lazily)
    "teaching.distributed": {"teaching.api", "teaching.outputs", "teaching.models", "teaching.labels"},
}
NEVER_IMPORTED_BY_LIBRARY = ("teaching.service", "teaching.cli", "teaching.evaluation")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package modules `path` imports (a `from pkg import name` counts as pkg.name when that is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    out: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", 0) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "teaching")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "teaching":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = all_modules()
    known = set(modules)
    return {name: imports_of(path, known) - {name} for name, path in modules.items()}


def part_of(name: str) -> str:
    """teaching.cams.gradient -> teaching.cams; teaching.api -> teaching.api."""
    return ".".join(name.split(".")[:2])


def test_no_import_cycle(graph):
    """Depth-first search over the import graph; a back edge is a cycle (package __init__ re-exports included)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1 and not nxt.startswith(node + "."):
                cycle = path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt]
                # a package's __init__ importing its own submodules is how re-exports work, not a cycle
                if not all(
                    b.startswith(a + ".") or a.startswith(b + ".") for a, b in zip(cycle, cycle[1:], strict=False)
                ):
                    pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_arrows_point_one_way(graph, part):
    allowed = ALLOWED[part] | {part, "teaching.errors"}
    for name, deps in graph.items():
        if part_of(name) != part:
            continue
        wrong = sorted(d for d in deps if part_of(d) not in allowed and d != "teaching")
        assert not wrong, f"{name} imports {wrong}; docs/ARCHITECTURE.md allows {sorted(allowed)}"


def test_the_library_never_imports_the_front_ends(graph):
    for name, deps in graph.items():
        if part_of(name) in NEVER_IMPORTED_BY_LIBRARY or name in ("teaching.__main__",):
            continue
        wrong = sorted(d for d in deps if part_of(d) in NEVER_IMPORTED_BY_LIBRARY)
        assert not wrong, f"{name} imports {wrong}"


def test_no_module_imports_gradio():
    for name, path in all_modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] == "gradio" for n in names), f"{name} imports gradio"


@pytest.mark.parametrize("front", ["app.py", "app_page.py", "app_quiz.py"])
def test_app_reaches_the_library_through_the_service(front):
    """The app modules (a new one must be listed) bind the service's functions; the engine is the service's."""
    assert sorted(p.name for p in REPO.glob("app*.py")) == ["app.py", "app_page.py", "app_quiz.py"]
    deps = imports_of(REPO / front, set(all_modules()))
    assert {part_of(d) for d in deps} <= {"teaching.service", "teaching.server", "teaching.errors", "teaching"}, deps
    lines = len((REPO / front).read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{front} has {lines} lines (limit {MAX_LINES})"


@pytest.mark.parametrize("name", sorted(all_modules()))
def test_no_module_over_the_size_limit(name):
    lines = len(all_modules()[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines (limit {MAX_LINES}): split it by job"


def test_method_facts_live_on_the_method_classes():
    """Each method class states its label; no other module lists method labels or slow methods."""
    from teaching.cams import METHODS

    assert all(cls.label and cls.name == key for key, cls in METHODS.items())
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if "cams" in path.relative_to(PACKAGE).parts:
            continue
        for tell in ('"Grad-CAM++"', '"Score-CAM"', "SLOW_ON_CPU", "GUIDED_METHODS", "CONTRAST_METHODS"):
            assert tell not in text, f"{path.relative_to(REPO)} repeats a method fact ({tell})"
