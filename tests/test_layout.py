"""The layout holds: webui's modules import each other in one direction only (web → jobs and
the recorder → the pipeline → the backend and the format), without cycles, and the definition
format knows nothing of the rest. Read from the source with ``ast`` (imports inside functions
count too)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "webui"

# Lower ranks never import higher ones. Same rank: only inside one package (format.*).
RANKS = {
    "expr": 0, "redact": 0, "infotext": 0, "images": 0, "lookup": 0, "ws": 1, "format": 1,
    "history": 1,
    "service": 2, "workflow": 2, "backend": 3, "reuse": 3, "choices": 4, "results": 4,
    "forms": 5, "pipeline": 5,
    "jobs": 6, "recorder": 7, "grids": 7, "catalog": 7, "config": 8, "state": 9,
    "views": 10, "guard": 10, "delivery": 10, "app": 11, "cli": 12, "__main__": 13, "__init__": 13,
}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The webui modules ``name`` imports (resolved, relative ones included)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.startswith("webui"):
                target = node.module.removeprefix("webui").lstrip(".")
            else:
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}" if target else alias.name
                out.add(full if full in known else target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("webui."):
                    out.add(alias.name.removeprefix("webui."))
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def test_no_import_cycles():
    edges = graph()
    # Importing a package's own __init__ from inside it is how packages re-export: skip those.
    edges = {a: {b for b in bs if not a.startswith(b + ".")} for a, bs in edges.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " → ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_imports_go_one_way():
    wrong = []
    for module, targets in graph().items():
        top = module.split(".")[0]
        if top == "demo":
            # The demo backend is a program of its own: it uses nothing of webui's.
            wrong += [f"{module} → {t}" for t in targets if not t.startswith("demo")]
            continue
        for target in targets:
            other = target.split(".")[0]
            if other == top or module.startswith(target + "."):
                continue  # inside one package
            if other == "demo" and top == "cli":
                continue  # `webui demo` and the demo service
            if RANKS[other] >= RANKS[top]:
                wrong.append(f"{module} → {target}")
    assert wrong == []


def test_every_module_has_a_rank():
    assert {m.split(".")[0] for m in modules()} - {"demo", "services"} <= set(RANKS)


def test_the_format_knows_nothing_of_the_rest():
    for module, targets in graph().items():
        if module.startswith("format"):
            assert all(t.startswith("format") or t == "expr" for t in targets), (module, targets)


def test_every_expression_function_is_documented():
    from webui import expr

    assert set(expr.FUNCTION_HELP) == set(expr.FUNCTIONS - expr._BUILTIN)
