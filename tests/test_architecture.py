"""The architecture's rules (docs: architecture.md), read from the AST of every library file (nothing is imported).

Import rules: one-way imports between nodes, ``cod_megatron.<subpackage or top-level module>``, ``cod_recipes``,
``cod_kernels``, ``cod_envs.<domain or top-level module>``, and a layer order over the ``cod_megatron`` parts
(``LAYERS``). Source rules: file and function sizes, and the launcher's rank variables read in one module.
``python tests/test_architecture.py [ROOT]`` prints every rule's offending edges or lines for a tree.
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
LAYERS: tuple[tuple[str, ...], ...] = (  # lowest first; a part imports only parts of lower layers
    ("config",),  # the typed config tree: imports no other part
    ("cod",),  # pure CoD maths: rewards, credit, losses
    ("data",),  # pure packing, built on cod's episodes and denominators
    ("infra",),  # capabilities, the process environment, logging: any part but the pure ones may use it
    ("models",),  # model families (HF shapes, name map, tokenizer rules), the typed model source, packaged models
    ("engines",),  # one RolloutEngine interface and its implementations
    ("rollout", "policy"),  # the two sides of the loop: neither imports the other
    ("sync",),  # above policy (reads its shards), pushes to the engines
    ("loop",),  # the loop's parts, used by train
    ("eval",),  # evaluation, in the loop and from its CLI
    ("infra.cli",),  # the shared command line (recipes, dry-run rendering)
    ("train", "launch", "convert"),  # entry points, with every ``__main__`` module
)
"""The parts of ``cod_megatron`` in import order (a module belongs to the longest matching part; a missing part,
one that does not exist yet, is simply absent). Inside one part, a module may not import a higher layer's module."""
SIZES = {"file": 400, "cod_megatron/train.py": 150, "function": 80}
"""Most lines per library file, for the entry point that reads as the algorithm, and per function (``def`` to its
last line) outside Triton bodies."""
TRITON_DECORATORS = {"triton.jit", "triton.autotune"}
RANK_VARIABLES = {"RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "LOCAL_RANK"}
RANK_READER = "cod_megatron/infra/process_env.py"
"""The one module that names the launcher's rank variables (``process_rank()``); everything else takes its values."""


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


def tree_sources(root: Path) -> dict[str, str]:
    """``{path relative to root: source}`` of every ``.py`` under the four package folders of ``root``."""
    files = [p for folder in FOLDERS for p in sorted((root / folder).rglob("*.py"))]
    return {str(p.relative_to(root)): p.read_text() for p in files}


def tree_edges(root: Path) -> list[Edge]:
    """Edges of every ``.py`` under the four package folders of ``root``."""
    return collect(tree_sources(root))


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


def layer(module: str) -> int | None:
    """Index in ``LAYERS`` of a ``cod_megatron`` module (``__main__`` modules: the top layer); None for a part that
    is not placed."""
    if module.endswith(".__main__"):
        return len(LAYERS) - 1
    rel = module.removeprefix("cod_megatron.")
    places = {part: i for i, parts in enumerate(LAYERS) for part in parts}
    best = max((p for p in places if rel == p or rel.startswith(p + ".")), key=len, default=None)
    return places.get(best) if best else None


def layer_order(edges: list[Edge]) -> list[str]:
    """Imports of a ``cod_megatron`` part that is not in a lower layer (in one part: not in a higher layer), and
    modules of parts that ``LAYERS`` does not place."""
    bad, unplaced = [], set()
    for e in edges:
        if not (e.module.startswith("cod_megatron.") and e.target.startswith("cod_megatron.")):
            continue
        src, dst = layer(e.module), layer(e.target)
        if src is None or dst is None:
            unplaced |= {m for m, i in ((e.module, src), (e.target, dst)) if i is None}
        elif src < dst or (src == dst and node(e.module) != node(e.target)):
            bad.append(f"{e}  [layer {src} -> {dst}]")
    return bad + [f"{m}: its part is not placed in LAYERS" for m in sorted(unplaced)]


def long_files(sources: dict[str, str]) -> list[str]:
    """Library files over their line limit (``SIZES``)."""
    limits = {rel: SIZES.get(rel, SIZES["file"]) for rel in sources}
    lines = {rel: len(src.splitlines()) for rel, src in sources.items()}
    return [f"{rel}: {lines[rel]} lines > {limits[rel]}" for rel in sorted(sources) if lines[rel] > limits[rel]]


def _triton_body(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Decorated ``@triton.jit`` or ``@triton.autotune(...)``: a kernel body, exempt from the function size."""
    return any(ast.unparse(d.func if isinstance(d, ast.Call) else d) in TRITON_DECORATORS for d in fn.decorator_list)


def long_functions(sources: dict[str, str]) -> list[str]:
    """Functions (methods, nested ones) over ``SIZES["function"]`` lines, ``def`` to last line, outside Triton
    bodies (a kernel and whatever it nests)."""
    limit, found = SIZES["function"], []
    for rel, src in sources.items():
        todo: list[ast.AST] = [ast.parse(src, rel)]
        while todo:
            for n in ast.iter_child_nodes(todo.pop()):
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef):
                    if _triton_body(n):
                        continue
                    if (size := n.end_lineno - n.lineno + 1) > limit:
                        found.append((rel, n.lineno, n.name, size))
                todo.append(n)
    return [f"{rel}:{line} {name}(): {size} lines > {limit}" for rel, line, name, size in sorted(found)]


def rank_readers(sources: dict[str, str]) -> list[str]:
    """Library files other than ``RANK_READER`` that name a launcher rank variable (``os.environ["RANK"]``, ...)."""
    found = [
        (rel, n.lineno, n.value)
        for rel, src in sources.items()
        if rel != RANK_READER
        for n in ast.walk(ast.parse(src, rel))
        if isinstance(n, ast.Constant) and n.value in RANK_VARIABLES
    ]
    return [f"{rel}:{line} names {name!r}" for rel, line, name in sorted(found)]


RULES = {
    "a_no_cycle": cycles,
    "a_only_entry_points_import_recipes": recipe_importers,
    "b_envs_import_nothing_from_cod_megatron": lambda edges: imports_of(edges, "cod_envs", "cod_megatron"),
    "c_kernels_import_nothing_from_cod_megatron": lambda edges: imports_of(edges, "cod_kernels", "cod_megatron"),
    "d_pure_parts_import_no_heavy_library_at_module_level": heavy_in_pure,
    "e_no_private_names_across_packages": private_imports,
    "f_parts_import_only_lower_layers": layer_order,
}
SOURCE_RULES = {
    "g_no_library_file_over_its_line_limit": long_files,
    "h_no_function_over_80_lines_outside_triton_bodies": long_functions,
    "i_rank_and_world_size_read_in_one_place": rank_readers,
}
SOURCES = tree_sources(ROOT)
EDGES = collect(SOURCES)


def violations(rule: str, sources: dict[str, str], edges: list[Edge]) -> list[str]:
    """A rule's offending lines for a tree."""
    return RULES[rule](edges) if rule in RULES else SOURCE_RULES[rule](sources)


@pytest.mark.parametrize("rule", [*RULES, *SOURCE_RULES])
def test_rule(rule):
    if bad := violations(rule, SOURCES, EDGES):
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


def test_checker_catches_imports_against_the_layer_order():
    fake = {
        "cod_megatron/config/base.py": "from cod_megatron.infra import log\n",  # pure part -> infra
        "cod_megatron/infra/log.py": "from cod_megatron.infra.cli import parser\n",  # in one part, upward
        "cod_megatron/infra/cli.py": "from cod_megatron.rollout import renderers\nimport cod_megatron.config.base\n",
        "cod_megatron/models/qwen3.py": "from cod_megatron.config import base\nfrom cod_megatron.infra import log\n",
        "cod_megatron/policy/weights.py": "from cod_megatron.sync.names import m\nimport cod_megatron.models.qwen3",
        "cod_megatron/rollout/renderers.py": "def f():\n    from cod_megatron.policy import weights\n",  # same layer
        "cod_megatron/sync/names.py": "from cod_megatron.policy import weights\n",
        "cod_megatron/sync/__main__.py": "from cod_megatron.infra.cli import parser\n",
        "cod_megatron/eval/__main__.py": "from cod_megatron.eval import stats\nfrom cod_megatron import train\n",
        "cod_megatron/eval/stats.py": "",
        "cod_megatron/train.py": "from cod_megatron.eval import stats\nfrom cod_megatron.newpart import x\n",
        "cod_megatron/newpart/x.py": "",
    }
    assert [b.split()[0] for b in layer_order(collect(fake))] == [
        "cod_megatron/config/base.py:1",
        "cod_megatron/eval/__main__.py:2",
        "cod_megatron/infra/log.py:1",
        "cod_megatron/policy/weights.py:1",
        "cod_megatron/rollout/renderers.py:2",
        "cod_megatron.newpart.x:",
    ]
    assert layer("cod_megatron.infra.cli") > layer("cod_megatron.eval.in_loop") > layer("cod_megatron.infra.log")
    assert layer("cod_megatron.models.qwen3") < layer("cod_megatron.policy") == layer("cod_megatron.rollout.x")


def _lines(n: int, head: str = "def f():") -> str:
    """A block of exactly ``n`` lines starting with ``head``."""
    return head + "\n" + "    x = 1\n" * (n - 1)


def test_checker_catches_files_over_their_line_limit():
    fake = {
        "cod_megatron/a.py": "x = 1\n" * 400,
        "envs/b.py": "x = 1\n" * 401,
        "cod_megatron/train.py": "x = 1\n" * 151,
        "kernels/c.py": "x = 1\n" * 150,
    }
    assert long_files(fake) == ["cod_megatron/train.py: 151 lines > 150", "envs/b.py: 401 lines > 400"]


def test_checker_catches_long_functions_except_triton_bodies():
    kernel = "@triton.jit\n" + _lines(120, "def _fwd_kernel(x):").replace("x = 1", "tl.store(x)")
    tuned = "@triton.autotune(configs=[], key=['n'])\n@triton.jit\n" + _lines(90, "def _bwd_kernel(x):")
    scripted = "@torch.jit.script\n" + _lines(81, "def g(x):")
    nested = "def outer():\n" + _lines(81, "    def inner():").replace("\n    ", "\n        ")
    method = "class A:\n" + _lines(81, "    def m(self):").replace("\n    ", "\n        ")
    fake = {"kernels/k.py": f"{kernel}\n{tuned}\n{scripted}", "cod_megatron/a.py": f"{_lines(80)}\n{nested}\n{method}"}
    assert long_functions(fake) == [
        "cod_megatron/a.py:82 outer(): 82 lines > 80",
        "cod_megatron/a.py:83 inner(): 81 lines > 80",
        "cod_megatron/a.py:166 m(): 81 lines > 80",
        "kernels/k.py:217 g(): 81 lines > 80",
    ]


def test_checker_catches_rank_variables_outside_the_process_env():
    fake = {
        "cod_megatron/infra/process_env.py": "rank = os.environ.get('RANK')\n",
        "cod_megatron/loop/a.py": "import os\nworld = int(os.environ['WORLD_SIZE'])\n",
        "cod_megatron/b.py": "msg = f'WORLD_SIZE={w}'\nlaunched = 'LOCAL_RANK' in os.environ\n",
    }
    assert rank_readers(fake) == [
        "cod_megatron/b.py:2 names 'LOCAL_RANK'",
        "cod_megatron/loop/a.py:2 names 'WORLD_SIZE'",
    ]


if __name__ == "__main__":
    sources = tree_sources(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
    edges = collect(sources)
    for rule in [*RULES, *SOURCE_RULES]:
        bad = violations(rule, sources, edges)
        print(f"{'FAIL' if bad else 'ok  '} {rule}" + "".join("\n       " + b.replace("\n", "\n       ") for b in bad))
