"""Evaluation during training: held-out packs through the same engines and runner, one rollout per pack.

Each evaluation writes ``<output_dir>/eval/step_<n>.json`` (per-position mean reward with 95 % intervals and the
gap, at every configured pack size, with and without hints) and a PNG of the curves; its headline numbers go into
the step's metrics as ``eval/...``. Evaluation samples are never trained on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cod_megatron.config import RunConfig
from cod_megatron.eval.plot import plot_positions
from cod_megatron.eval.stats import gap_stats, position_stats
from cod_megatron.rollout.manager import RolloutManager
from cod_megatron.rollout.pack_source import PackSource


class Evaluator:
    """Runs the evaluation packs of :class:`PackSource` at each configured pack size."""

    def __init__(self, manager: RolloutManager, source: PackSource, cfg: RunConfig):
        self.manager, self.cfg = manager, cfg
        self.packs = {s: source.eval_packs(cfg.eval.packs, s) for s in cfg.eval.pack_sizes}
        self.out = Path(cfg.run.output_dir) / "eval"

    def evaluate(self, step: int) -> dict[str, float]:
        """Evaluate the engines' current weights; returns flat ``eval/...`` metrics."""
        report: dict[str, Any] = {"step": step}
        metrics: dict[str, float] = {}
        variants = [("cod", True)] + ([("hint_blind", False)] if self.cfg.eval.hint_blind else [])
        for size, packs in self.packs.items():
            curves = {}
            for name, visible in variants:
                res = self.manager.run(
                    packs, 1, step=-1 - step, hint_visible=visible, temperature=self.cfg.eval.temperature
                )
                rewards = [lc.solve_rewards() for lc in res.lifecycles if not lc.has_judge_error]
                stats = position_stats(rewards)
                gap, ci = gap_stats(rewards)
                curves[name] = stats
                report[f"{name}_s{size}"] = {
                    "mean": stats.mean,
                    "ci95": stats.ci95,
                    "n": stats.n,
                    "gap": gap,
                    "gap_ci95": ci,
                }
                metrics[f"eval/{name}_s{size}_gap"] = gap
                metrics[f"eval/{name}_s{size}_pos0"] = stats.mean[0]
            plot_positions(curves, self.out / f"step_{step}_s{size}.png", f"step {step}, packs of {size}")
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"step_{step}.json").write_text(json.dumps(report, indent=1))
        return metrics
