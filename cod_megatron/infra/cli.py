"""Command line shared by the entry points: ``--recipe NAME [section.field=value ...] [--dry-run] [--list-recipes]``."""

from __future__ import annotations

import argparse
import json
import sys

import cod_recipes
from cod_megatron.config import ConfigError, ParallelLayout, RunConfig, apply_overrides, finalize
from cod_megatron.infra.capabilities import transformer_engine_layers
from cod_megatron.models.source import resolve_model


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The shared argument parser."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--recipe", default="debug_cpu", help="recipe name (see --list-recipes)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and parallel layout, then exit")
    p.add_argument("--list-recipes", action="store_true", help="list the recipes and exit")
    p.add_argument("overrides", nargs="*", help="section.field=value overrides, applied in order, validated once")
    return p


def resolve_recipe(recipe: str, overrides: list[str]) -> tuple[RunConfig, ParallelLayout]:
    """Recipe -> overrides -> ``model.hf_path`` resolved (a packaged model prepared, a local checkpoint's shapes
    taken from its config.json) -> one validation pass.

    Raises ConfigError (dotted field name) or KeyError.
    """
    cfg = cod_recipes.get(recipe)
    apply_overrides(cfg, overrides)
    resolve_model(cfg.model)
    return cfg, finalize(cfg)


def resolve(args: argparse.Namespace) -> tuple[RunConfig, ParallelLayout]:
    """:func:`resolve_recipe` of the parsed command line."""
    return resolve_recipe(args.recipe, args.overrides)


def report(error: ConfigError | KeyError) -> int:
    """Print a config error (its dotted field) or an unknown name the way every entry point does; exit code 2."""
    if isinstance(error, ConfigError):
        print(f"config error: {error.field}: {error.reason}", file=sys.stderr)
    else:
        print(f"error: {error.args[0]}", file=sys.stderr)
    return 2


def render(cfg: RunConfig, layout: ParallelLayout) -> str:
    """What ``--dry-run`` prints: the config tree, the layout and the tokenizer the run will use, as JSON.

    Raises ConfigError for a local ``model.hf_path`` whose tokenizer fails the startup checks (a hub id is only
    named). The renderer module is imported here, not at the top, so importing the CLI (the launcher does) does not
    pull in transformers and the domains."""
    from cod_megatron.rollout.renderers import describe_renderer

    _, layers = transformer_engine_layers(cfg.model.params_dtype)
    summary = {
        "config": cfg.to_dict(),
        "layout": layout.describe(),
        "layers": layers,
        "tokenizer": describe_renderer(cfg),
    }
    return json.dumps(summary, indent=2)


def handle_common(args: argparse.Namespace) -> tuple[RunConfig, ParallelLayout] | int:
    """Handle --list-recipes, config errors and --dry-run; returns an exit code or the resolved config."""
    if args.list_recipes:
        for name in cod_recipes.names():
            doc = (cod_recipes.RECIPES[name].__doc__ or "").strip().splitlines()[0]
            print(f"{name:32s} {doc}")
        return 0
    try:
        cfg, layout = resolve(args)
        if args.dry_run:
            print(render(cfg, layout))
            return 0
    except (ConfigError, KeyError) as e:
        return report(e)
    return cfg, layout
