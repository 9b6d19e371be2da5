"""Command line shared by the entry points: ``--recipe NAME [section.field=value ...] [--dry-run] [--list-recipes]``."""

from __future__ import annotations

import argparse
import json
import sys

import cod_recipes
from cod_megatron.config import ConfigError, ParallelLayout, RunConfig, apply_overrides, finalize


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The shared argument parser."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--recipe", default="debug_cpu", help="recipe name (see --list-recipes)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and parallel layout, then exit")
    p.add_argument("--list-recipes", action="store_true", help="list the recipes and exit")
    p.add_argument("overrides", nargs="*", help="section.field=value overrides, applied in order, validated once")
    return p


def resolve(args: argparse.Namespace) -> tuple[RunConfig, ParallelLayout]:
    """Recipe -> overrides -> one validation pass. Raises ConfigError (dotted field name) or KeyError."""
    cfg = cod_recipes.get(args.recipe)
    apply_overrides(cfg, args.overrides)
    return cfg, finalize(cfg)


def render(cfg: RunConfig, layout: ParallelLayout) -> str:
    """What ``--dry-run`` prints: the config tree and the layout, as JSON."""
    return json.dumps({"config": cfg.to_dict(), "layout": layout.describe()}, indent=2)


def handle_common(args: argparse.Namespace) -> tuple[RunConfig, ParallelLayout] | int:
    """Handle --list-recipes, config errors and --dry-run; returns an exit code or the resolved config."""
    if args.list_recipes:
        for name in cod_recipes.names():
            doc = (cod_recipes.RECIPES[name].__doc__ or "").strip().splitlines()[0]
            print(f"{name:32s} {doc}")
        return 0
    try:
        cfg, layout = resolve(args)
    except ConfigError as e:
        print(f"config error: {e.field}: {e.reason}", file=sys.stderr)
        return 2
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(render(cfg, layout))
        return 0
    return cfg, layout
