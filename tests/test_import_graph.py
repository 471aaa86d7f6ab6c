"""The import graph of genimg/ runs one way: no cycles, no upward imports.

Every import counts, also one inside a function (a lazy import hides an edge, it does not
remove it). Units are ranked from the bottom up; a module may import its own unit and the
units below it. Concrete families (genimg.families) sit above everything that the loop, the
sampler and the evaluator need, and those entry points never import them.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "genimg"

# Bottom to top. A unit is a top-level module or package of genimg.
LAYERS = [
    ["errors"],
    ["platform"],
    ["ops"],
    ["data"],
    ["watermark"],
    ["images"],
    ["losses"],
    ["corruptions"],
    ["models"],
    ["train"],
    ["synthesis"],
    ["metrics"],
    ["families"],
    ["cli"],
    ["sample", "evaluate", "provenance", "synthesize"],
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
NEVER_IMPORT_FAMILIES = (
    "train", "synthesis", "metrics", "cli", "sample", "evaluate", "synthesize"
)  # fmt: skip


def _module_name(path: pathlib.Path) -> str:
    parts = ("genimg", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set[str]:
    """Every genimg module named by an import statement anywhere in the file."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return _imports_in(path.read_text(), package)


def _imports_in(source: str, package: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "genimg")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            if base.split(".")[0] != "genimg":
                continue
            for alias in node.names:  # "from genimg import data" imports genimg.data
                sub = f"{base}.{alias.name}"
                found.add(sub if _exists(sub) else base)
    return found


def _exists(module: str) -> bool:
    rel = pathlib.Path(*module.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


GRAPH = {_module_name(p): _imports(p) for p in sorted(ROOT.rglob("*.py"))}


def test_every_unit_is_ranked():
    units = {_unit(m) for m in GRAPH} - {None}
    assert units <= set(RANK), f"add {sorted(units - set(RANK))} to LAYERS"


def _upward(graph) -> list[str]:
    bad = []
    for module, imports in graph.items():
        src = _unit(module)
        for target in imports:
            dst = _unit(target)
            if src is None or dst is None or src == dst:
                continue
            if RANK[dst] >= RANK[src]:
                bad.append(f"{module} -> {target}")
    return sorted(bad)


def test_no_upward_imports():
    bad = _upward(GRAPH)
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def test_shared_modules_never_import_a_concrete_family():
    bad = [
        f"{module} -> {target}"
        for module, imports in GRAPH.items()
        if _unit(module) in NEVER_IMPORT_FAMILIES
        for target in imports
        if _unit(target) == "families"
    ]
    assert not bad, bad


def test_no_cycles():
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(module, stack):
        state[module] = 1
        for target in sorted(GRAPH.get(module, ())):
            if target not in GRAPH or target == module:
                continue
            if state.get(target) == 1:
                cycle = stack[stack.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*stack, target])
        state[module] = 2

    for module in GRAPH:
        if module not in state:
            visit(module, [module])


def test_the_checker_sees_lazy_and_relative_imports():
    lazy = "import os\n\ndef f():\n    from genimg.families import gan\n"
    assert _upward({"genimg.train.loop": _imports_in(lazy, "genimg.train")}) == [
        "genimg.train.loop -> genimg.families.gan"
    ]
    relative = "def f():\n    from ..metrics import fid\n"
    assert _imports_in(relative, "genimg.train") == {"genimg.metrics.fid"}
    assert _upward({"genimg.train.x": {"genimg.metrics.fid"}}) == [
        "genimg.train.x -> genimg.metrics.fid"
    ]
    # and the real graph holds function-level imports (sample_quality loads data lazily):
    assert "genimg.data" in GRAPH["genimg.metrics.sample_quality"]
