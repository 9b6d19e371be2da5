"""Why can hints hidden equal hints shown? Plays a checkpoint's (or the pre-trained model's) held-out evaluation packs
in both variants with the evaluation's seeds and says, per position, how often the two variants' solve episodes
sampled the very same tokens, and how often the hint the solve saw differs from the initial one.

The evaluation runs both variants with the same per-call sampling seeds (common random numbers, a paired
comparison); if the model's answers do not depend on the hint, the two variants then sample identical answers.

Usage: ``python scripts/hint_visibility_probe.py [--recipe smollm2_135m_cod_cpu] [--packs 16] [--out FILE.json]``
(step 0: the recipe's pre-trained weights).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors.torch import load_file

from cod_envs import registry
from cod_megatron.engines.embedded import EmbeddedEngine
from cod_megatron.infra.cli import resolve_recipe
from cod_megatron.loop import run_parts as parts
from cod_megatron.models.source import model_source
from cod_megatron.rollout.pack_source import PackSource
from cod_megatron.rollout.renderers import run_renderer


def _engine(cfg, renderer) -> EmbeddedEngine:
    """An embedded engine holding the recipe's pre-trained HF weights (no trainer needed for step 0)."""
    engine = EmbeddedEngine(**parts.engine_kwargs(cfg, renderer))
    weights: dict = {}
    for f in sorted(Path(model_source(cfg.model.hf_path).weights_dir()).glob("*.safetensors")):
        weights |= load_file(str(f))
    named = list(weights.items())
    engine.update_weights(named, version=0, last=True)
    return engine


def _generated(episode) -> list[int]:
    return [t for t, g in zip(episode.token_ids, episode.generated, strict=True) if g]


def probe(recipe: str, packs: int, size: int) -> dict:
    """Both variants of ``packs`` held-out packs of ``size`` at step 0, compared episode by episode."""
    cfg, _ = resolve_recipe(recipe, [])
    domain, renderer = registry.load(cfg.env.train_domains[0]), run_renderer(cfg)
    manager = parts.build_manager(cfg, domain, [_engine(cfg, renderer)], renderer, temperature=cfg.eval.temperature)
    held_out = PackSource(domain, cfg).eval_packs(packs, size)
    runs = {v: manager.run(held_out, 1, step=-1, hint_visible=v).lifecycles for v in (True, False)}
    same, rewards = [[0] * size for _ in range(2)], {True: [0.0] * size, False: [0.0] * size}
    notes: list[list[str]] = []
    for shown, hidden in zip(runs[True], runs[False], strict=True):
        a, b = sorted(shown.solves(), key=lambda e: e.position), sorted(hidden.solves(), key=lambda e: e.position)
        for j, (x, y) in enumerate(zip(a, b, strict=True)):
            same[0][j] += _generated(x) == _generated(y)
            same[1][j] += x.reward == y.reward
            rewards[True][j] += x.reward / packs
            rewards[False][j] += y.reward / packs
        ups = sorted(shown.updates(), key=lambda e: e.position)
        notes.append([renderer.tokenizer.decode(_generated(u)) for u in ups])
    return {
        "recipe": recipe,
        "packs": packs,
        "pack_size": size,
        "reward_by_position": {"hints_shown": rewards[True], "hints_hidden": rewards[False]},
        "identical_solve_tokens_by_position": same[0],
        "equal_solve_reward_by_position": same[1],
        "hints_written": notes,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="smollm2_135m_cod_cpu")
    ap.add_argument("--packs", type=int, default=16)
    ap.add_argument("--pack-size", type=int, default=4)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    result = probe(args.recipe, args.packs, args.pack_size)
    text = json.dumps(result, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "hints_written"}, indent=1))
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
