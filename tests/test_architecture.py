"""The package's layering (../shared/DESIGN.md and the README's Architecture section), enforced.

Every module of ``src/anyseg`` is parsed with ``ast``; every import of an anyseg module counts,
at module level or inside a function, under ``TYPE_CHECKING`` or not. A module may import its
own package and the floors below its own; nothing below the package face imports the face; only
``cli`` (and the face, lazily) imports ``training``; and there are no circles between files.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "anyseg"
README = Path(__file__).resolve().parents[1] / "README.md"

#: Floors from the bottom up; a unit may import units on lower floors and its own package.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("errors", "_version"),
    ("settings", "config", "io", "ops", "visualize"),
    ("data", "clip"),
    ("modeling", "hf_layout"),
    ("checkpoint",),
    ("releases",),
    ("precision",),
    ("predictor",),
    ("automatic",),
    ("engine", "evaluation", "export", "server"),
    ("training",),
    ("cli",),
    ("__init__", "__main__"),
)
#: What training may import (besides the bottom floors): it sits beside the inference stack,
#: not on top of it.
TRAINING_MAY_IMPORT = {"modeling", "ops", "data", "clip", "checkpoint"}
#: Units that may import training.
TRAINING_IMPORTED_BY = {"cli", "training"}

FLOOR_OF = {unit: i for i, units in enumerate(FLOORS) for unit in units}


def modules() -> Iterator[tuple[str, Path]]:
    """(dotted name, path) of every module of the package."""
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


MODULES = dict(modules())


def unit_of(module: str) -> str:
    """The layering unit of a dotted module name: its top-level package or module."""
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def resolve(name: str) -> str | None:
    """The anyseg module an imported name refers to (None for other packages)."""
    if name != "anyseg" and not name.startswith("anyseg."):
        return None
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]  # ``from anyseg.x import y`` where y is not a module
    return name


def imports(module: str, path: Path) -> Iterator[str]:
    """Every anyseg module that ``module`` imports, anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = resolve(alias.name)
                if target:
                    yield target
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                target = resolve(f"{base}.{alias.name}") if base else None
                if target == base and base == "anyseg":
                    yield "anyseg"  # a name from the face itself
                elif target:
                    yield target


EDGES = {module: set(imports(module, path)) - {module} for module, path in MODULES.items()}


def test_every_unit_has_a_floor() -> None:
    units = {unit_of(m) for m in MODULES}
    assert units <= set(FLOOR_OF), f"units without a floor in FLOORS: {units - set(FLOOR_OF)}"


def test_no_upward_imports() -> None:
    upward = []
    for module, targets in EDGES.items():
        unit = unit_of(module)
        for target in targets:
            other = unit_of(target)
            if other == unit:
                continue
            if FLOOR_OF[other] >= FLOOR_OF[unit] and unit not in ("__init__", "__main__"):
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that run sideways or up the floors:\n" + "\n".join(sorted(upward))


def test_nothing_below_the_face_imports_it() -> None:
    offenders = [m for m, t in EDGES.items() if "anyseg" in t and m != "anyseg.__main__"]
    assert not offenders, f"modules importing the package face: {offenders}"


def test_training_stands_beside_the_inference_stack() -> None:
    bottom = {u for u, floor in FLOOR_OF.items() if floor <= FLOOR_OF["settings"]}
    for module, targets in EDGES.items():
        unit = unit_of(module)
        for target in targets:
            other = unit_of(target)
            if unit == "training" and other != "training":
                assert other in TRAINING_MAY_IMPORT | bottom, f"{module} imports {target}"
            if other == "training":
                assert unit in TRAINING_IMPORTED_BY, f"{module} imports {target}"


def test_no_import_circles() -> None:
    """No two files reach each other through imports (depth-first search for a back edge)."""
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(EDGES.get(node, ())):
            if nxt == "anyseg" or node == "anyseg":
                continue  # the face imports everything lazily; checked above
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(EDGES):
        if module not in state:
            visit(module)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_readme_draws_the_same_house() -> None:
    """Every unit of the package is in the README's Architecture tree, and nothing else is."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    tree = section.split("```", 2)[1]
    named = set(re.findall(r"^  ([A-Za-z_][\w]*)(?:\.py|/)", tree, flags=re.M))
    units = {unit_of(m) for m in MODULES} - {"__main__"}
    named -= {"weights"}  # a folder of data files, not code
    assert named == units, f"README lists {sorted(named - units)}, misses {sorted(units - named)}"
    for floor in FLOORS[:-1]:
        for unit in floor:
            if unit in units:
                assert f"`{unit}`" in section or unit in ("__init__",), (
                    f"the README's layering sentence does not name {unit}"
                )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from anyseg import io\n", {"anyseg.io"}),
        ("from anyseg import __version__\n", {"anyseg"}),
        ("def f():\n    from anyseg.ops.rle import encode_mask\n", {"anyseg.ops.rle"}),
        ("import anyseg.modeling.sam\n", {"anyseg.modeling.sam"}),
        ("from . import boxes\n", {"anyseg.ops.boxes"}),
    ],
)
def test_the_import_reader_itself(tmp_path: Path, source: str, expected: set[str]) -> None:
    path = tmp_path / "probe.py"
    path.write_text(source)
    assert set(imports("anyseg.ops.probe", path)) == expected
