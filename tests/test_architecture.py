"""The map is true: docs/ARCHITECTURE.md's layers block, read as a table, against every
import of cli.py and of every module under fastmlp/ (parsed with `ast`: top-level imports,
imports inside functions, relative imports).

- Every module is listed: its own line in the block's first column (`fastmlp/x.py`), or a
  package's line (`fastmlp/sweep/`: all of its modules are that one layer).
- A module imports only from layers listed below its own; inside a package any import is
  fine.
- No import cycle between modules, inside a package or across layers.

Imports made by name at run time (importlib, `python -m`) are not seen; Python's implicit
import of a module's parent package does not count.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAP = REPO / "docs" / "ARCHITECTURE.md"
HEADING = "## The layers"


def map_layers(text: str) -> list[str]:
    """The first column of the block (the first ``` fence) under the layers heading, top to
    bottom; a line starting with a blank continues the description of the one above."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(HEADING))
    fences = [i for i in range(start + 1, len(lines)) if lines[i].startswith("```")]
    assert len(fences) >= 2, f"{MAP.name}: no ``` block under {HEADING!r}"
    return [line.split()[0] for line in lines[fences[0] + 1:fences[1]]
            if line.strip() and not line[0].isspace()]


def project_modules() -> dict[str, str]:
    """Dotted module name -> path relative to the repository (posix) for cli.py and every
    .py file under fastmlp/ (a package's __init__.py is the package's name)."""
    paths = [REPO / "cli.py", *sorted((REPO / "fastmlp").rglob("*.py"))]
    modules = {}
    for path in paths:
        relative = path.relative_to(REPO)
        parts = list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = relative.as_posix()
    return modules


MODULES = project_modules()
LAYERS = map_layers(MAP.read_text(encoding="utf-8"))


def layer_of(path: str) -> str | None:
    """The map's entry for a module's path: its own line, else its package's (the deepest
    listed folder holding it), else None."""
    if path in LAYERS:
        return path
    folders = [entry for entry in LAYERS if entry.endswith("/") and path.startswith(entry)]
    return max(folders, key=len) if folders else None


@dataclass(frozen=True)
class Import:
    source: str  # module name of the importing file
    line: int
    target: str  # module name of the imported project module


def _package_of(module: str) -> list[str]:
    """The package a module's relative imports start from."""
    parts = module.split(".")
    return parts if MODULES[module].endswith("__init__.py") else parts[:-1]


def imports_of(module: str) -> list[Import]:
    """Every import of a project module anywhere in the module's file."""
    path = REPO / MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from .x import y, from .. import x
                package = _package_of(module)
                base = ".".join(package[:len(package) - (node.level - 1)] +
                                ([node.module] if node.module else []))
            else:
                base = node.module
            # `from package import name`: the module package.name if there is one, else the
            # package's __init__.py (the name is defined there).
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            if target in MODULES and target != module and \
                    Import(module, node.lineno, target) not in found:
                found.append(Import(module, node.lineno, target))
    return found


# Imports the map does not allow yet: (importing file, imported module) -> why it is still
# there. An entry whose import is gone fails test_every_waiver_is_still_needed.
WAIVED = {}  # (module, imported module): a reason; none today
ALL_IMPORTS = [found for module in MODULES for found in imports_of(module)]
IMPORTS = [found for found in ALL_IMPORTS
           if (MODULES[found.source], found.target) not in WAIVED]


def where(found: Import) -> str:
    return f"{MODULES[found.source]}:{found.line}"


def test_the_map_lists_every_module_once_and_only_modules_that_exist():
    problems = []
    for entry in sorted({entry for entry in LAYERS if LAYERS.count(entry) > 1}):
        problems.append(f"{entry}: listed {LAYERS.count(entry)} times")
    for entry in LAYERS:
        if not (REPO / entry).is_file() and not (entry.endswith("/") and
                                                 (REPO / entry / "__init__.py").is_file()):
            problems.append(f"{entry}: listed, but no such module or package")
    for path in MODULES.values():
        if layer_of(path) is None:
            problems.append(f"{path}: not in the map (a line of its own in the first column "
                            f"of {MAP.name}'s layers block, or inside a listed package)")
    assert not problems, f"{MAP.name} ({HEADING}):\n" + "\n".join(problems)


def test_every_import_goes_to_a_layer_below():
    problems = []
    for found in IMPORTS:
        source = layer_of(MODULES[found.source])
        target = layer_of(MODULES[found.target])
        if source is None or target is None or source == target:
            continue  # an unlisted module fails the test above; inside a package: fine
        if LAYERS.index(target) < LAYERS.index(source):
            problems.append(f"{where(found)}: imports {found.target}, but {MAP.name} lists "
                            f"{target} (layer {LAYERS.index(target) + 1}) above {source} "
                            f"(layer {LAYERS.index(source) + 1})")
    assert not problems, "imports that go up the map:\n" + "\n".join(problems)


def _cycles() -> list[list[Import]]:
    """One cycle of imports per strongly connected group of modules (Tarjan)."""
    edges: dict[str, dict[str, Import]] = {module: {} for module in MODULES}
    for found in IMPORTS:
        edges[found.source].setdefault(found.target, found)
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(module):
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in edges[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(group)

    for module in MODULES:
        if module not in index:
            visit(module)
    cycles = []
    for group in groups:  # a shortest way from the group's first module back to itself
        start = min(group)
        paths = {start: []}
        frontier = [start]
        while frontier and start not in {t for m in frontier for t in edges[m]}:
            next_frontier = []
            for module in frontier:
                for target, found in edges[module].items():
                    if target in group and target not in paths:
                        paths[target] = paths[module] + [found]
                        next_frontier.append(target)
            frontier = next_frontier
        last = next(m for m in frontier if start in edges[m])
        cycles.append(paths[last] + [edges[last][start]])
    return cycles


def test_no_import_cycles():
    cycles = _cycles()
    assert not cycles, "import cycles:\n" + "\n".join(
        " -> ".join(f"{where(found)} imports {found.target}" for found in cycle)
        for cycle in cycles)


def test_every_waiver_is_still_needed():
    present = {(MODULES[found.source], found.target) for found in ALL_IMPORTS}
    stale = [f"{source} no longer imports {target}" for source, target in WAIVED
             if (source, target) not in present]
    assert not stale, "remove these entries from WAIVED:\n" + "\n".join(stale)
