"""The architecture's one-way import rules, read from the AST of every library file (nothing is imported).

Nodes: ``cod_megatron.<subpackage or top-level module>``, ``cod_recipes``, ``cod_kernels``, ``cod_envs.<domain or
top-level module>``. ``python tests/test_architecture.py [ROOT]`` prints every rule's offending edges for a tree.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"cod_megatron": "cod_megatron", "recipes": "cod_recipes", "kernels": "cod_kernels", "envs": "cod_envs"}
ENTRY_POINTS = {"cod_megatron.infra.cli", "cod_megatron.train", "cod_megatron.launch.submit"}
PURE = {"cod_megatron.config", "cod_megatron.cod", "cod_megatron.data"}
HEAVY = {"ray", "megatron", "sglang", "transformer_engine"}


@dataclass(frozen=True)
class Edge:
    """``module`` imports ``target`` (and ``names`` from it) at ``file:line``; ``top``: at module level."""

    module: str
    target: str
    names: tuple[str, ...]
    file: str
    line: int
    top: bool

    def __str__(self) -> str:
        return f"{self.file}:{self.line} {self.module} -> {self.target}" + (
            f" ({', '.join(self.names)})" if self.names else ""
        )


def module_name(rel: str) -> str:
    """``kernels/a/b.py`` -> ``cod_kernels.a.b`` (a package's ``__init__.py`` is the package)."""
    folder, *rest = Path(rel).with_suffix("").parts
    return ".".join([FOLDERS[folder], *[p for p in rest if p != "__init__"]])


def node(module: str) -> str:
    """The package-level node a module belongs to (external modules: their top-level name)."""
    parts = module.split(".")
    if parts[0] in ("cod_megatron", "cod_envs"):
        return ".".join(parts[:2])
    return parts[0]


class _Imports(ast.NodeVisitor):
    """Collects the import statements and literal ``importlib.import_module`` calls of one file."""

    def __init__(self, module: str, is_pkg: bool, file: str, known: set[str]):
        self.module, self.file, self.known, self.depth, self.edges = module, file, known, 0, []
        self.package = module if is_pkg else module.rpartition(".")[0]

    def _add(self, target: str, names: tuple[str, ...], line: int) -> None:
        self.edges.append(Edge(self.module, target, names, self.file, line, self.depth == 0))

    def _nested(self, n: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(n)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _nested

    def visit_If(self, n: ast.If) -> None:  # `if TYPE_CHECKING:` imports never run
        self._nested(n) if "TYPE_CHECKING" in ast.unparse(n.test) else self.generic_visit(n)

    def visit_Import(self, n: ast.Import) -> None:
        for a in n.names:
            self._add(a.name, (), n.lineno)

    def visit_ImportFrom(self, n: ast.ImportFrom) -> None:
        base = n.module or ""
        if n.level:
            pkg = self.package.split(".")[: len(self.package.split(".")) - (n.level - 1)]
            base = ".".join(pkg + ([n.module] if n.module else []))
        subs = [a.name for a in n.names if f"{base}.{a.name}" in self.known]
        for name in subs:  # `from pkg import submodule` is an edge to the submodule
            self._add(f"{base}.{name}", (), n.lineno)
        if names := tuple(a.name for a in n.names if a.name not in subs):
            self._add(base, names, n.lineno)

    def visit_Call(self, n: ast.Call) -> None:
        f, args = n.func, n.args
        name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
        if name == "import_module" and args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
            self._add(args[0].value, (), n.lineno)
        self.generic_visit(n)


def collect(sources: dict[str, str]) -> list[Edge]:
    """Edges of a tree given as ``{path relative to the root: source}``."""
    known = {module_name(rel) for rel in sources}
    edges = []
    for rel, src in sorted(sources.items()):
        v = _Imports(module_name(rel), rel.endswith("__init__.py"), rel, known)
        v.visit(ast.parse(src, rel))
        edges += v.edges
    return edges


def tree_edges(root: Path) -> list[Edge]:
    """Edges of every ``.py`` under the four package folders of ``root``."""
    files = [p for folder in FOLDERS for p in sorted((root / folder).rglob("*.py"))]
    return collect({str(p.relative_to(root)): p.read_text() for p in files})


def cross(edges: list[Edge]) -> list[Edge]:
    """Edges between two different nodes."""
    return [e for e in edges if node(e.module) != node(e.target)]


# ---- the rules: each returns its offending edges (or cycles) as readable lines -----------------------------------
def cycles(edges: list[Edge]) -> list[str]:
    """Strongly connected groups of project nodes, each with every edge that keeps it a cycle (file:line)."""
    inner = [e for e in cross(edges) if node(e.target).startswith("cod_")]
    graph: dict[str, set[str]] = {}
    for e in inner:
        graph.setdefault(node(e.module), set()).add(node(e.target))

    def reach(n: str) -> set[str]:
        seen, todo = set(), [n]
        while todo:
            for m in graph.get(todo.pop(), set()) - seen:
                seen.add(m)
                todo.append(m)
        return seen

    r = {n: reach(n) for n in graph}
    groups = {frozenset(m for m in r[n] if n in r.get(m, ())) for n in graph if n in r[n]}
    return [
        f"cycle among {', '.join(sorted(g))}:"
        + "".join(f"\n    {e}" for e in inner if node(e.module) in g and node(e.target) in g)
        for g in sorted(groups, key=sorted)
    ]


def recipe_importers(edges: list[Edge]) -> list[str]:
    """Only entry points (and ``__main__`` modules) import recipes; config imports neither recipes nor the CLI."""
    bad = []
    for e in cross(edges):
        src, dst = node(e.module), node(e.target)
        if dst == "cod_recipes" and e.module not in ENTRY_POINTS and not e.module.endswith("__main__"):
            bad.append(str(e))
        elif src == "cod_megatron.config" and e.target.startswith("cod_megatron.infra.cli"):
            bad.append(str(e))
    return bad


def imports_of(edges: list[Edge], src: str, dst: str) -> list[str]:
    """Edges from nodes under ``src`` to nodes under ``dst``."""
    return [str(e) for e in edges if node(e.module).startswith(src) and node(e.target).startswith(dst)]


def heavy_in_pure(edges: list[Edge]) -> list[str]:
    """Module-level imports of ray / megatron / sglang / transformer_engine in the pure parts."""
    return [str(e) for e in edges if e.top and node(e.module) in PURE and node(e.target) in HEAVY]


def private_imports(edges: list[Edge]) -> list[str]:
    """``_private`` names (or modules) of another project node (dunders are public)."""
    private = lambda s: s.startswith("_") and not s.endswith("__")  # noqa: E731
    bad = []
    for e in cross(edges):
        names = tuple(n for n in e.names if private(n))
        if node(e.target).startswith("cod_") and (names or any(private(p) for p in e.target.split("."))):
            bad.append(str(replace(e, names=names)))
    return bad


RULES = {
    "a_no_cycle": cycles,
    "a_only_entry_points_import_recipes": recipe_importers,
    "b_envs_import_nothing_from_cod_megatron": lambda edges: imports_of(edges, "cod_envs", "cod_megatron"),
    "c_kernels_import_nothing_from_cod_megatron": lambda edges: imports_of(edges, "cod_kernels", "cod_megatron"),
    "d_pure_parts_import_no_heavy_library_at_module_level": heavy_in_pure,
    "e_no_private_names_across_packages": private_imports,
}
EDGES = tree_edges(ROOT)


@pytest.mark.parametrize("rule", RULES)
def test_rule(rule):
    if bad := RULES[rule](EDGES):
        pytest.fail(f"{rule}: {len(bad)} violation(s)\n  " + "\n  ".join(bad), pytrace=False)


# ---- the checker catches each kind of violation (so the tests above can fail) ----------------------------------
def test_checker_sees_the_edges():
    assert EDGES and {node(e.module) for e in EDGES} >= {"cod_megatron.policy", "cod_kernels", "cod_recipes"}


def test_checker_catches_a_cycle_through_relative_and_lazy_imports():
    fake = {
        "kernels/__init__.py": "",
        "kernels/op.py": "def f():\n    from cod_megatron.policy import loss\n",
        "cod_megatron/policy/__init__.py": "",
        "cod_megatron/policy/loss.py": "from . import util\nimportlib.import_module('cod_kernels.op')",
        "cod_megatron/policy/util.py": "",
    }
    (found,) = cycles(collect(fake))
    assert found.startswith("cycle among cod_kernels, cod_megatron.policy:")
    assert "kernels/op.py:2" in found and "cod_megatron/policy/loss.py:2" in found


def test_checker_catches_recipes_outside_entry_points():
    fake = {
        "cod_megatron/config/plan.py": "from cod_megatron.infra import cli\nimport cod_recipes\n",
        "cod_megatron/infra/cli.py": "import cod_recipes\n",
        "cod_megatron/eval/__main__.py": "import cod_recipes\n",
        "recipes/__init__.py": "from cod_megatron.config import plan\n",
    }
    edges = collect(fake)
    assert [b.split()[0] for b in recipe_importers(edges)] == [
        "cod_megatron/config/plan.py:1",
        "cod_megatron/config/plan.py:2",
    ]
    assert cycles(edges)


def test_checker_catches_envs_and_kernels_importing_cod_megatron():
    edges = collect({"envs/grid/env.py": "import cod_megatron.cod", "kernels/k.py": "from cod_megatron import x"})
    assert imports_of(edges, "cod_envs", "cod_megatron") == ["envs/grid/env.py:1 cod_envs.grid.env -> cod_megatron.cod"]
    assert imports_of(edges, "cod_kernels", "cod_megatron") == ["kernels/k.py:1 cod_kernels.k -> cod_megatron (x)"]


def test_checker_catches_heavy_imports_only_at_module_level():
    src = "import ray\nif TYPE_CHECKING:\n    import sglang\ndef f():\n    import megatron\nclass A:\n    import os"
    bad = heavy_in_pure(collect({"cod_megatron/data/x.py": src, "cod_megatron/policy/y.py": src}))
    assert bad == ["cod_megatron/data/x.py:1 cod_megatron.data.x -> ray"]


def test_checker_catches_private_names_of_another_package():
    fake = {
        "cod_megatron/policy/convert.py": "",
        "cod_megatron/policy/a.py": "from cod_megatron.policy.convert import _local\n",
        "cod_megatron/rollout/b.py": "from cod_megatron.policy.convert import _name, public, __version__\n",
    }
    assert private_imports(collect(fake)) == [
        "cod_megatron/rollout/b.py:1 cod_megatron.rollout.b -> cod_megatron.policy.convert (_name)"
    ]


if __name__ == "__main__":
    edges = tree_edges(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
    for rule, fn in RULES.items():
        bad = fn(edges)
        print(f"{'FAIL' if bad else 'ok  '} {rule}" + "".join("\n       " + b.replace("\n", "\n       ") for b in bad))
