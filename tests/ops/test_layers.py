"""The package's layout is its architecture: imports flow one way, from the entry points down to the store.

    cli                      the command line: may use everything
    ops                      running it: the local stack, deployment, image checks
    jobs, web                the service's work and who sends it; the HTTP side the functions share
    picture, config, malloc  from spec to pixels to an encoded image; settings; process memory
    store                    the object store and the files it writes
    errors                   the error types every layer raises

Imports inside functions count too: a lazy import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "fractally"
LAYER = {"errors": 0, "store": 1, "picture": 2, "config": 2, "malloc": 2, "jobs": 3, "web": 3, "ops": 4, "cli": 5}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports(module: str) -> set[str]:
    """The fractally modules ``module`` imports, anywhere in its text."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fractally":
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                      for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "fractally"}
    return {name for name in found if name in MODULES and name != module}


def part(module: str) -> str:
    """The layer a module belongs to: its subpackage, or its own name for a top-level module."""
    return module.split(".")[1] if "." in module else "fractally"


def test_every_module_belongs_to_a_layer() -> None:
    assert {part(m) for m in MODULES} - {"fractally"} <= set(LAYER)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if part(m) != "fractally"))
def test_a_module_imports_only_its_own_layer_or_the_layers_below(module: str) -> None:
    upward = {name for name in imports(module)
              if part(name) != part(module) and LAYER.get(part(name), -1) >= LAYER[part(module)]}
    assert not upward, f"{module} (layer {part(module)}) imports {sorted(upward)} from its own level or above"


def test_no_module_imports_itself_through_others() -> None:
    graph = {module: imports(module) for module in MODULES}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        for name in graph[module]:
            visit(name, path + [module])
        done.add(module)

    for module in graph:
        visit(module, [])
