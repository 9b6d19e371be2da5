"""No config field left unread: every leaf of the config tree is read by code outside ``cod_megatron/config``.

A field that validation checks but nothing reads is a promise the run does not keep (``algorithm.hint_penalty`` and
``algorithm.step_penalty_coef`` were such fields: validated, never applied). A field ``<section>.<field>`` counts as
read when code in the library, the recipes, the kernels or the scripts loads ``<field>`` from something that is that
section: a chain ``x.<section>.<field>`` (``cfg.rollout.temperature``, ``self.cfg.optimizer.lr``), a name bound to
one (``o = cfg.optimizer`` then ``o.lr``; a parameter annotated ``algo: AlgorithmConfig`` then ``algo.loss_agg``),
or ``getattr(<that>, "<field>")``; or when the sbatch template names ``<section>.<field>``. The field's last name
alone is not enough: ``run.name`` and ``optimizer.name``, ``rollout.temperature`` and ``eval.temperature`` would
hide each other.
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
    # ModelConfig.head_dim (config/model.py) resolves it; policy/model.py passes model.head_dim as kv_channels.
    "model.kv_channels": "ModelConfig.head_dim -> transformer_config(kv_channels=...)",
    # ParallelLayout places the teachers' engines (teacher_gpus, teacher_bundles); the memory planner budgets them
    "parallel.teacher_engines": "ParallelLayout.teacher_gpus / teacher_bundles",
    "parallel.teacher_engine_tp": "ParallelLayout.teacher_gpus / teacher_bundles; the memory planner's teacher phase",
}

KNOWN_UNREAD: dict[str, str] = {}
"""Fields nothing reads yet, each a known gap with its reason; the test holds this list exact."""


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


SECTION_OF_CLASS = {f.default_factory.__name__: f.name for f in dataclasses.fields(RunConfig)} | {
    "ParallelLayout": "parallel"
}
"""``RolloutConfig`` -> ``rollout``: a parameter annotated with a section's class is that section. The validated
``ParallelLayout`` carries ``parallel``'s fields to the rest of the library under the same names."""
SECTIONS = set(SECTION_OF_CLASS.values())
SECTION_OF_ATTRIBUTE = {s: s for s in SECTIONS} | {"layout": "parallel"}
"""``x.<attribute>.<field>`` reads ``<section>.<field>``: the sections by name, and ``x.layout`` (a ParallelLayout)."""


def _annotated_section(annotation: ast.expr | None) -> str | None:
    """The section a parameter annotation names (``AlgorithmConfig``, ``"AlgorithmConfig"``, ``config.ModelConfig``,
    ``ModelConfig | None``), else None."""
    if annotation is None:
        return None
    text = ast.unparse(annotation).strip("'\"")
    names = [part.strip().rsplit(".", 1)[-1] for part in text.split("|")]
    return next((SECTION_OF_CLASS[n] for n in names if n in SECTION_OF_CLASS), None)


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Names bound to a section anywhere in the module: ``o = cfg.optimizer``, ``e, o = cfg.env, cfg.optimizer``,
    parameters annotated with a section class. Per module, not per scope: coarse, but only ever towards 'read'."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and (section := _annotated_section(node.annotation)):
            out[node.arg] = section
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                pairs = [(target, node.value)]
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs = list(zip(target.elts, node.value.elts, strict=False))
                for t, v in pairs:
                    if isinstance(t, ast.Name) and isinstance(v, ast.Attribute) and v.attr in SECTION_OF_ATTRIBUTE:
                        out[t.id] = SECTION_OF_ATTRIBUTE[v.attr]
    return out


def _section_of(node: ast.expr, aliases: dict[str, str]) -> str | None:
    if isinstance(node, ast.Attribute) and node.attr in SECTION_OF_ATTRIBUTE:
        return SECTION_OF_ATTRIBUTE[node.attr]
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    return None


def names_read(tree: ast.AST) -> set[str]:
    """``section.field`` for each field loaded from a section in ``tree`` (attribute or literal ``getattr``)."""
    aliases, found = _aliases(tree), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            if section := _section_of(node.value, aliases):
                found.add(f"{section}.{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and (section := _section_of(node.args[0], aliases))
        ):
            found.add(f"{section}.{node.args[1].value}")
    return found


def reads_outside_config() -> set[str]:
    found: set[str] = set()
    for top in CODE:
        for path in (ROOT / top).rglob("*.py"):
            if path.is_relative_to(ROOT / "cod_megatron" / "config"):
                continue
            found |= names_read(ast.parse(path.read_text(), str(path)))
    for template in (ROOT / "slurm").rglob("*.j2"):
        found |= {f"{a}.{b}" for a, b in re.findall(r"\b(\w+)\.(\w+)", template.read_text()) if a in SECTIONS}
    return found


def test_every_config_field_is_read_outside_config():
    read = reads_outside_config()
    unread = [f for f in leaf_fields(RunConfig) if f not in read and f not in READ_INSIDE_CONFIG]
    assert set(unread) == set(KNOWN_UNREAD), (
        f"config fields validated but never read: {sorted(set(unread) - set(KNOWN_UNREAD))}; "
        f"known gaps now read (delete them from KNOWN_UNREAD): {sorted(set(KNOWN_UNREAD) - set(unread))}"
    )


def test_the_scan_sees_a_field_read_only_by_validation_as_unread(tmp_path):
    # the check can fail: a section whose field only its own check() reads is reported
    src = "class S:\n    def check(self):\n        return self.only_checked\n"
    assert not any(r.endswith(".only_checked") for r in names_read(ast.parse(src)))
    library = "def f(cfg):\n    cfg.algorithm.only_set = 1\n    return cfg.algorithm.other\n"
    assert names_read(ast.parse(library)) == {"algorithm.other"}


def test_a_field_of_one_section_does_not_count_for_a_namesake_in_another():
    # run.name / optimizer.name, rollout.temperature / eval.temperature share their last name part
    library = "def f(cfg, o):\n    o = cfg.optimizer\n    return cfg.eval.temperature, o.name\n"
    assert names_read(ast.parse(library)) == {"eval.temperature", "optimizer.name"}
    annotated = "def g(algo: AlgorithmConfig, m: 'ModelConfig | None'):\n    return getattr(algo, 'gamma'), m.arch\n"
    assert names_read(ast.parse(annotated)) == {"algorithm.gamma", "model.arch"}


def test_the_allow_list_names_real_fields():
    assert set(READ_INSIDE_CONFIG) | set(KNOWN_UNREAD) <= set(leaf_fields(RunConfig))
