"""Package-level import graph of a tree, in words: ``python scripts/import_graph.py [ROOT]``.

Uses the AST collector of ``tests/test_architecture.py`` (imports inside functions and literal
``importlib.import_module`` calls included); domains under ``cod_envs`` are collapsed into one package.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_architecture import cycles, node, tree_edges  # noqa: E402

OWN = ("cod_megatron", "cod_recipes", "cod_kernels", "cod_envs")


def package(name: str) -> str:
    """``cod_envs.<domain>`` -> ``cod_envs``; other nodes as they are."""
    return "cod_envs" if name.startswith("cod_envs") else name


def main(root: Path) -> None:
    """Print the counts, the cycles and every package edge with its number of import statements."""
    edges = tree_edges(root)
    counts = Counter(
        (package(node(e.module)), package(node(e.target)))
        for e in edges
        if node(e.target).split(".")[0] in OWN and package(node(e.module)) != package(node(e.target))
    )
    modules = {e.module for e in edges}
    print(f"{len(modules)} modules, {len(edges)} import statements, {len(counts)} package edges")
    print("cycles:", "\n".join(cycles(edges)) or "none")
    for (a, b), n in sorted(counts.items()):
        print(f"  {a} -> {b} ({n})")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
