"""Recipes: zero-argument functions returning a RunConfig, named for the hardware they were sized for.

Imported as ``cod_recipes`` (PyPI already has a ``recipes`` package).
"""

from collections.abc import Callable

from cod_megatron.config import RunConfig
from cod_recipes.debug import debug_cpu, debug_cpu_code_lock, debug_cpu_mix, opd_cpu_mix
from cod_recipes.llama3_70b import llama3_70b_cod_64gpu_h100
from cod_recipes.paper_settings import (
    qwen3_8b_cod_setting_a_24gpu_h100,
    qwen3_8b_cod_setting_b_32gpu_h100,
    qwen3_8b_opd_three_domains_48gpu_h100,
)
from cod_recipes.qwen3_8b import qwen3_8b_cod_8gpu_h100
from cod_recipes.smollm2 import smollm2_135m_cod_1gpu, smollm2_135m_cod_cpu

RECIPES: dict[str, Callable[[], RunConfig]] = {
    f.__name__: f
    for f in (
        debug_cpu,
        debug_cpu_code_lock,
        debug_cpu_mix,
        opd_cpu_mix,
        smollm2_135m_cod_cpu,
        smollm2_135m_cod_1gpu,
        qwen3_8b_cod_8gpu_h100,
        qwen3_8b_cod_setting_a_24gpu_h100,
        qwen3_8b_cod_setting_b_32gpu_h100,
        qwen3_8b_opd_three_domains_48gpu_h100,
        llama3_70b_cod_64gpu_h100,
    )
}


def get(name: str) -> RunConfig:
    """Build the recipe ``name`` (a fresh config each call)."""
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]()


def names() -> list[str]:
    """Recipe names, sorted."""
    return sorted(RECIPES)
