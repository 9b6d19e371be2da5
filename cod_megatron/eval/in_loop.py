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

from cod_envs import registry
from cod_megatron.cod.episode import Pack
from cod_megatron.config import RunConfig
from cod_megatron.eval.plot import plot_positions
from cod_megatron.eval.stats import PositionStats, gap_stats, lifecycle_gaps, no_width_reason, position_stats
from cod_megatron.rollout.manager import RolloutManager
from cod_megatron.rollout.pack_source import PackSource, eval_suites


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
        self.suites = [
            (s, source.eval_formed(registry.load(s.domain), s.setting, s.packs, s.pack_size, s.packing))
            for s in eval_suites(cfg)
        ]
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
        if self.suites:
            return self.evaluate_suites(step)
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
        self._write(step, report, rows)
        return metrics

    def evaluate_suites(self, step: int) -> dict[str, float]:
        """Every suite of ``eval.suites``: its rollouts (seeds 0..r-1) each a curve, and pooled; ``eval/<suite>/...``
        (pooled gap and position 0, each rollout's gap), ``step_<n>.json`` under the suite's name, one PNG per suite
        and per-pack rows tagged with suite and rollout."""
        report: dict[str, Any] = {"step": step, "packs_file": f"step_{step}_packs.jsonl"}
        metrics: dict[str, float] = {}
        rows: list[dict[str, Any]] = []
        for suite, formed in self.suites:
            packs, idx = [f.pack for f in formed], [list(f.env_task_idx) for f in formed]
            variant = "cod" if suite.hints_visible else "hint_blind"
            by_rollout: list[list[list[float]]] = []
            for r in range(suite.rollouts):
                res = self.manager.run(
                    packs, 1, step=-1 - step, hint_visible=suite.hints_visible, temperature=self.cfg.eval.temperature,
                    env_task_idx=idx, first_rollout=r,
                )  # fmt: skip
                kept = [lc for lc in res.lifecycles if not lc.has_judge_error]
                by_rollout.append([lc.solve_rewards() for lc in kept])
                tag = {"suite": suite.name, "rollout": r}
                rows += [pack_row(step, suite.pack_size, variant, lc.pack, lc.solve_rewards()) | tag for lc in kept]
            pooled = [x for rewards in by_rollout for x in rewards]
            curves = {"pooled": position_stats(pooled)} if suite.rollouts > 1 else {}
            curves |= {f"rollout {r}": position_stats(x) for r, x in enumerate(by_rollout)}
            gap, ci = gap_stats(pooled)
            report[suite.name] = {
                "suite": vars(suite),
                "pooled": _summary(position_stats(pooled), gap, ci, lifecycle_gaps(pooled)),
                "by_rollout": [_summary(position_stats(x), *gap_stats(x), lifecycle_gaps(x)) for x in by_rollout],
            }
            metrics[f"eval/{suite.name}/gap"] = gap
            metrics[f"eval/{suite.name}/pos0"] = position_stats(pooled).mean[0]
            metrics |= {f"eval/{suite.name}/gap_rollout_{r}": gap_stats(x)[0] for r, x in enumerate(by_rollout)}
            plot_positions(curves, self.out / f"step_{step}_{suite.name}.png", f"step {step}, {suite.name}")
        self._write(step, report, rows)
        return metrics

    def _write(self, step: int, report: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"step_{step}.json").write_text(json.dumps(report, indent=1))
        (self.out / f"step_{step}_packs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _summary(stats: PositionStats, gap: float, gap_ci: tuple[float, float], gaps: list[float]) -> dict[str, Any]:
    """One curve's entry of ``step_<n>.json``: means, intervals and why one has no width, n, the gap."""
    return {
        "mean": stats.mean,
        "ci95": stats.ci95,
        "ci95_notes": stats.notes,
        "n": stats.n,
        "gap": gap,
        "gap_ci95": gap_ci,
        "gap_ci95_note": no_width_reason(gaps),
    }
