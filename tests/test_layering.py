"""Dependencies flow one way: each package of `tuneloop` imports only packages in its own layer
or below (docs/ARCHITECTURE.md, "Layers"), and no two modules of a package import each other.

Imports are read from the source with `ast` (those inside functions and under TYPE_CHECKING
count too: a deferred import is still a dependency), so the test needs nothing installed and
names the file and line of every import that breaks the rule.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tuneloop"

# Top to bottom. A package may import its own layer and the layers below it, never above.
# "tuneloop" is the package's own __init__ (the `Project` facade); `__main__` runs the CLI.
LAYERS: list[set[str]] = [
    {"__main__", "cli"},
    {"webapp"},  # the app that mounts the API and the dashboard
    {"ui", "demo"},
    {"serve"},
    {"rollout"},  # stages, gates, promotion, history: used by serve, ui, cli and demo alike
    {"router"},  # query routing between a rollout's variants
    {"flywheel"},  # logs back into data; its monitor counts traffic by evaluate's rules
    {"evaluate"},
    {"train"},
    {"variants", "variant_protocol"},  # what evaluation, serving and training run
    {"rag"},
    {"data"},
    {"engines"},
    {"tuneloop", "project"},
    {"config", "governance"},
    {"store"},
    {"errors", "numbers", "text"},
]
LAYER_OF = {name: depth for depth, names in enumerate(LAYERS) for name in names}

# Known breaks, listed so that the rest is enforced now; each must be fixed, and the marker
# removed with it (strict: a fixed break that is still marked fails the test).
KNOWN_LAYER_BREAKS: dict[str, str] = {}
KNOWN_PRIVATE_USES: dict[str, str] = {}
KNOWN_MODULE_CYCLES = {
}


@dataclass(frozen=True)
class Import:
    """One `import` statement of a tuneloop module naming another tuneloop module."""

    source: str  # dotted module name, e.g. tuneloop.rag.index
    target: str
    where: str  # path:line

    @property
    def source_package(self) -> str:
        return package_of(self.source)

    @property
    def target_package(self) -> str:
        return package_of(self.target)


def package_of(module: str) -> str:
    """The top-level package (or module) of tuneloop a dotted name belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "tuneloop"


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (migrations are generated scripts: left out)."""
    found = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if "migrations" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The known module a dotted name is (or is inside: `tuneloop.rag.index.Report`)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports() -> list[Import]:
    """Every import between tuneloop modules, wherever it is in the file."""
    known = modules()
    found = []
    for module, path in known.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package, up level - 1 packages
                    parts = package.split(".")
                    base = ".".join([*parts[:len(parts) - node.level + 1], *filter(None, [base])])
                # `from tuneloop import rollout` names a module; `from tuneloop import Project`
                # names something of the package itself
                names = [f"{base}.{alias.name}" for alias in node.names]
            for name in names:
                target = _resolve(name, known)
                if target is not None and target != module:
                    found.append(Import(module, target, f"{path.relative_to(SRC.parents[1])}:"
                                                        f"{node.lineno}"))
    return found


ALL_IMPORTS = imports()
PACKAGES = sorted({package_of(m) for m in modules()})


def _marked(package: str, known: dict[str, str]) -> object:
    reason = known.get(package)
    return pytest.param(package, marks=pytest.mark.xfail(reason=reason, strict=True)) \
        if reason else package


def test_every_package_has_a_layer() -> None:
    missing = [p for p in PACKAGES if p not in LAYER_OF]
    assert not missing, f"add {missing} to LAYERS here and in docs/ARCHITECTURE.md"


@pytest.mark.parametrize("package", [_marked(p, KNOWN_LAYER_BREAKS) for p in PACKAGES])
def test_package_imports_only_its_layer_and_below(package: str) -> None:
    layer = LAYER_OF.get(package, -1)
    upward = [f"{i.where}: {i.source} imports {i.target} ({i.target_package} is a layer above)"
              for i in ALL_IMPORTS
              if i.source_package == package and LAYER_OF.get(i.target_package, -1) < layer]
    assert not upward, "\n".join(upward)


def test_packages_of_one_layer_do_not_import_each_other_both_ways() -> None:
    edges = {(i.source_package, i.target_package) for i in ALL_IMPORTS
             if i.source_package != i.target_package}
    # across layers the test above catches it; within one layer only this one can
    both = sorted((a, b) for a, b in edges if (b, a) in edges and a < b
                  and LAYER_OF.get(a) == LAYER_OF.get(b))
    assert not both, f"package cycles: {both}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
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
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


@pytest.mark.parametrize("package", [_marked(p, KNOWN_MODULE_CYCLES) for p in PACKAGES])
def test_modules_of_a_package_do_not_import_each_other_in_a_cycle(package: str) -> None:
    # A package's __init__ re-exporting its modules (which may use what __init__ defines) is the
    # usual shape of a package, not a cycle between two ideas; those edges are left out.
    known = modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for i in ALL_IMPORTS:
        if i.source_package == package == i.target_package and \
                known[i.source].name != "__init__.py" and known[i.target].name != "__init__.py":
            graph[i.source].add(i.target)
            graph.setdefault(i.target, set())  # every module is a node
    assert not _cycles(graph)


def private_uses(package: str) -> list[str]:
    """Where a module of `package` uses a private name (`_name`) of another module: imported
    from it, or reached through it as `module._name`. A private module (`cli._remote`) may be
    used inside its own package."""
    known = modules()
    found = []
    for module, path in known.items():
        if package_of(module) != package:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases: dict[str, str] = {}  # local name -> tuneloop module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    if target in known:
                        aliases[alias.asname or alias.name] = target
                        if alias.name.startswith("_") and package_of(target) != package:
                            found.append(f"{path.name}:{node.lineno}: imports {target}")
                    elif node.module in known and alias.name.startswith("_") \
                            and not alias.name.startswith("__"):
                        found.append(f"{path.name}:{node.lineno}: imports {target}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname and alias.name in known:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in aliases and node.attr.startswith("_") \
                    and not node.attr.startswith("__"):
                found.append(f"{path.name}:{node.lineno}: uses "
                             f"{aliases[node.value.id]}.{node.attr}")
    return found


@pytest.mark.parametrize("package", [_marked(p, KNOWN_PRIVATE_USES) for p in PACKAGES])
def test_no_module_uses_another_modules_private_names(package: str) -> None:
    uses = private_uses(package)
    assert not uses, "\n".join(uses)


def test_the_checker_sees_known_imports() -> None:
    # guards the parsing above: an empty import list would let every test here pass
    pairs = {(i.source, i.target) for i in ALL_IMPORTS}
    assert ("tuneloop.rag.index", "tuneloop.data.chunking") in pairs
    # `from tuneloop import rollout` names the rollout package
    assert ("tuneloop.cli.rollout", "tuneloop.rollout") in pairs
    assert ("tuneloop.__main__", "tuneloop.cli.main") in pairs
