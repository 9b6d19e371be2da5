"""Evaluation during training: held-out packs through the same engines and runner, one rollout per pack.

Each evaluation writes ``<output_dir>/eval/step_<n>.json`` (per-position mean reward with 95 % intervals and the
gap, at every configured pack size, with and without hints), the raw data behind it,
``step_<n>_packs.jsonl`` (one line per evaluated pack: its rewards by position, see :func:`pack_row`), so any
interval or comparison can be recomputed, and a PNG of the curves; its headline numbers go into the step's metrics
as ``eval/...``. Evaluation samples are never trained on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cod_megatron.cod.episode import Pack
from cod_megatron.config import RunConfig
from cod_megatron.eval.plot import plot_positions
from cod_megatron.eval.stats import gap_stats, lifecycle_gaps, no_width_reason, position_stats
from cod_megatron.rollout.manager import RolloutManager
from cod_megatron.rollout.pack_source import PackSource


def pack_row(step: int, size: int, variant: str, pack: Pack, rewards: list[float]) -> dict[str, Any]:
    """One evaluated pack: the checkpoint step, pack size, ``cod`` or ``hint_blind``, the pack's id, seed and test
    rows, and its solve rewards by position."""
    return {
        "step": step,
        "pack_size": size,
        "variant": variant,
        "pack": pack.pack_id,
        "pack_seed": pack.seed,
        "rows": [t.row for t in pack.tasks],
        "rewards": rewards,
    }


class Evaluator:
    """Runs the evaluation packs of :class:`PackSource` at each configured pack size, for each training domain.

    A one-domain run's names are unprefixed (``eval/cod_s4_gap``, ``cod_s4``, ``step_0_s4.png``); a mixture prefixes
    each with its domain (``eval/hidden_key/cod_s4_gap``, ``hidden_key/cod_s4``, ``step_0_hidden_key_s4.png``) and
    its per-pack rows carry ``domain``."""

    def __init__(self, manager: RolloutManager, source: PackSource, cfg: RunConfig):
        self.manager, self.cfg = manager, cfg
        names = [d.name for d in source.domains]
        self.prefixes = [f"{n}/" for n in names] if len(names) > 1 else [""]
        self.packs = {
            (prefix, s): source.eval_packs(cfg.eval.packs, s, domain=d)
            for d, prefix in enumerate(self.prefixes)
            for s in cfg.eval.pack_sizes
        }
        self.out = Path(cfg.run.output_dir) / "eval"

    def evaluate(self, step: int) -> dict[str, float]:
        """Evaluate the engines' current weights; returns flat ``eval/...`` metrics."""
        report: dict[str, Any] = {"step": step, "packs_file": f"step_{step}_packs.jsonl"}
        metrics: dict[str, float] = {}
        rows: list[dict[str, Any]] = []
        variants = [("cod", True)] + ([("hint_blind", False)] if self.cfg.eval.hint_blind else [])
        for (prefix, size), packs in self.packs.items():
            curves = {}
            for name, visible in variants:
                res = self.manager.run(
                    packs, 1, step=-1 - step, hint_visible=visible, temperature=self.cfg.eval.temperature
                )
                kept = [lc for lc in res.lifecycles if not lc.has_judge_error]
                rewards = [lc.solve_rewards() for lc in kept]
                tag = {"domain": prefix[:-1]} if prefix else {}
                rows += [pack_row(step, size, name, lc.pack, lc.solve_rewards()) | tag for lc in kept]
                stats = position_stats(rewards)
                gap, ci = gap_stats(rewards)
                curves[name] = stats
                report[f"{prefix}{name}_s{size}"] = {
                    "mean": stats.mean,
                    "ci95": stats.ci95,
                    "ci95_notes": stats.notes,
                    "n": stats.n,
                    "dropped": len(res.lifecycles) - len(kept),
                    "gap": gap,
                    "gap_ci95": ci,
                    "gap_ci95_note": no_width_reason(lifecycle_gaps(rewards)),
                }
                metrics[f"eval/{prefix}{name}_s{size}_gap"] = gap
                metrics[f"eval/{prefix}{name}_s{size}_pos0"] = stats.mean[0]
            png = self.out / f"step_{step}_{prefix.replace('/', '_')}s{size}.png"
            plot_positions(curves, png, f"step {step}, {prefix}packs of {size}")
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"step_{step}.json").write_text(json.dumps(report, indent=1))
        (self.out / f"step_{step}_packs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return metrics
