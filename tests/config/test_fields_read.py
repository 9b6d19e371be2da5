"""No config field left unread: every leaf of the config tree is read by code outside ``cod_megatron/config``.

A field that validation checks but nothing reads is a promise the run does not keep (``algorithm.hint_penalty`` and
``algorithm.step_penalty_coef`` were such fields: validated, never applied). A field counts as read when its name
is loaded as an attribute (``x.hint_penalty``) or through ``getattr(x, "hint_penalty")`` in the library, the
recipes, the kernels or the scripts, or appears as ``.name`` in the sbatch template. Name-level matching is coarse
(a common name such as ``seed`` is read by many things), but a field nobody reads at all cannot hide.
"""

import ast
import dataclasses
import re
from pathlib import Path

from cod_megatron.config import RunConfig

ROOT = Path(__file__).resolve().parents[2]
CODE = ("cod_megatron", "recipes", "kernels", "scripts")

READ_INSIDE_CONFIG = {
    # ParallelLayout (config/layout.py) reads it and hands it to megatron-core's initialize_model_parallel as
    # expert_model_parallel_size (ParallelLayout.megatron_kwargs); nothing else needs it.
    "parallel.ep": "ParallelLayout -> expert_model_parallel_size",
}


def leaf_fields(cls: type, prefix: str = "") -> list[str]:
    """Dotted names of every leaf field under the dataclass ``cls``."""
    out = []
    for f in dataclasses.fields(cls):
        factory = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if factory is not None and dataclasses.is_dataclass(factory):
            out += leaf_fields(factory, f"{prefix}{f.name}.")
        else:
            out.append(f"{prefix}{f.name}")
    return out


def names_read(tree: ast.AST) -> set[str]:
    """Attribute names loaded in ``tree``, plus literal ``getattr(obj, "name")`` reads."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            found.add(node.attr)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
        ):
            found.add(node.args[1].value)
    return found


def reads_outside_config() -> set[str]:
    found: set[str] = set()
    for top in CODE:
        for path in (ROOT / top).rglob("*.py"):
            if path.is_relative_to(ROOT / "cod_megatron" / "config"):
                continue
            found |= names_read(ast.parse(path.read_text(), str(path)))
    for template in (ROOT / "slurm").rglob("*.j2"):
        found |= set(re.findall(r"\.(\w+)", template.read_text()))
    return found


def test_every_config_field_is_read_outside_config():
    read = reads_outside_config()
    unread = [f for f in leaf_fields(RunConfig) if f.rsplit(".", 1)[-1] not in read and f not in READ_INSIDE_CONFIG]
    assert not unread, f"config fields validated but never read: {unread}"


def test_the_scan_sees_a_field_read_only_by_validation_as_unread(tmp_path):
    # the check can fail: a section whose field only its own check() reads is reported
    src = "class S:\n    def check(self):\n        return self.only_checked\n"
    assert "only_checked" in names_read(ast.parse(src))
    library = "def f(cfg):\n    cfg.algorithm.only_set = 1\n    return cfg.algorithm.other\n"
    assert "only_set" not in names_read(ast.parse(library)) and "other" in names_read(ast.parse(library))


def test_the_allow_list_names_real_fields():
    assert set(READ_INSIDE_CONFIG) <= set(leaf_fields(RunConfig))
