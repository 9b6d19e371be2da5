"""Reward versus pack position, one line per policy, 95 % CI bands (matplotlib, headless).

The plots are a convenience next to the numbers (metrics.jsonl, eval/*.json): where matplotlib is not installed (a
bare GPU machine, ``scripts/gpu_check.sh``) they are skipped with a warning instead of failing the run at its end.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cod_megatron.eval.stats import PositionStats

log = logging.getLogger(__name__)


def _pyplot():
    """``matplotlib.pyplot`` on the headless Agg backend, or None (with a warning) when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        log.warning("matplotlib is not installed: no PNG plots (the numbers are in the run directory)")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_positions(curves: dict[str, PositionStats], path: str | Path, title: str) -> Path | None:
    """Write the PNG and return its path (None without matplotlib)."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for label, s in curves.items():
        x = list(range(len(s.mean)))
        ax.plot(x, s.mean, marker="o", label=f"{label} (n={s.n})")
        ax.fill_between(x, [lo for lo, _ in s.ci95], [hi for _, hi in s.ci95], alpha=0.2)
    ax.set_title(title)
    return _save(plt, fig, ax, "position in pack", "mean reward", path)


def _save(plt, fig, ax, xlabel: str, ylabel: str, path: str | Path) -> Path:
    """Shared axes style, then write the PNG."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_training_positions(
    metrics_jsonl: str | Path, path: str | Path, prefix: str = "rollout/reward_pos_"
) -> Path | None:
    """Mean rollout reward at each pack position over training steps, from a run's metrics.jsonl (None: no plot)."""
    import json

    plt = _pyplot()
    if plt is None:
        return None
    rows = [json.loads(line) for line in Path(metrics_jsonl).read_text().splitlines() if line.strip()]
    keys = sorted({k for r in rows for k in r if k.startswith(prefix)}, key=lambda k: int(k[len(prefix) :]))
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for k in keys:
        pts = [(r["step"], r[k]) for r in rows if k in r]
        ax.plot([s for s, _ in pts], [v for _, v in pts], label=f"position {k[len(prefix) :]}")
    return _save(plt, fig, ax, "trainer step", "mean rollout reward", path)


def plot_training_curves(metrics_jsonl: str | Path, domains: list[str]) -> list[Path]:
    """``reward_by_position.png`` beside ``metrics_jsonl`` and, for a mixture, ``reward_by_position_<domain>.png``
    from each domain's ``rollout/<domain>/reward_pos_<k>``."""
    out = Path(metrics_jsonl).parent
    plots = [plot_training_positions(metrics_jsonl, out / "reward_by_position.png")]
    if len(domains) > 1:
        plots += [
            plot_training_positions(metrics_jsonl, out / f"reward_by_position_{d}.png", f"rollout/{d}/reward_pos_")
            for d in domains
        ]
    return [p for p in plots if p is not None]
