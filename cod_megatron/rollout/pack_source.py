"""Where the training and evaluation packs come from: the domain's generator, split by seed (cod.md 8, 10.1).

Training packs of step ``s`` take the next ``packs_per_step * pack_size`` train rows (cycling) and the reference's
batch-id pack seeds; evaluation packs take test rows and stable pack seeds, so every checkpoint meets the same
hidden environments and none of them was trained on.
"""

from __future__ import annotations

from typing import Any

from cod_envs.registry import Domain
from cod_megatron.cod.episode import Pack, Task
from cod_megatron.cod.pack_forming import form_packs
from cod_megatron.config import RunConfig


class PackSource:
    """Training packs per step and fixed held-out evaluation packs of one domain."""

    def __init__(self, domain: Domain, cfg: RunConfig):
        self.domain, self.cfg = domain, cfg
        e = cfg.env
        self.train_rows = domain.make_rows(e.num_train_rows, e.data_seed, "train", e.setting)

    def train_packs(self, step: int) -> list[Pack]:
        """``rollout.packs_per_step`` packs of ``rollout.pack_size`` for trainer step ``step`` (1-based)."""
        r = self.cfg.rollout
        n = r.packs_per_step * r.pack_size
        start = (step - 1) * n
        tasks = [self._task(self.train_rows, (start + i) % len(self.train_rows)) for i in range(n)]
        formed = form_packs(
            tasks, pack_size=r.pack_size, strategy=self.cfg.algorithm.packing_strategy, batch_id=f"train/{step}"
        )
        return [f.pack for f in formed]

    def eval_packs(self, packs: int, pack_size: int) -> list[Pack]:
        """``packs`` packs of distinct test rows with stable seeds (the same at every evaluation). The evaluation
        data seed also salts the pack seeds, which draw HiddenKey's key and CodeLock's code (row indices repeat across
        data seeds); seed 0, that of every committed evaluation, keeps the reference's unsalted seeds."""
        e = self.cfg.env
        seed = e.data_seed if self.cfg.eval.data_seed is None else self.cfg.eval.data_seed
        rows = self.domain.make_rows(packs * pack_size, seed, "test", e.setting)
        tasks = [self._task(rows, i) for i in range(len(rows))]
        return [f.pack for f in form_packs(tasks, pack_size=pack_size, stable_seed=True, stable_salt=seed or None)]

    def _task(self, rows: list[dict[str, Any]], i: int) -> Task:
        return Task(taskset_id=self.domain.name, row=i, data=rows[i])
