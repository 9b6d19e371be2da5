"""Where the training and evaluation packs come from: the domains' generators, split by seed (cod.md 8, 10.1).

Training packs of step ``s`` are split between the run's domains by weight (:func:`pack_quotas`, exact per step);
each domain's packs take its next train rows (cycling) and every pack holds one domain's tasks, with the reference's
batch-id pack seeds. Evaluation packs take test rows and stable pack seeds, so every checkpoint meets the same hidden
environments and none of them was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cod_envs.registry import Domain
from cod_megatron.cod.episode import Pack, Task
from cod_megatron.cod.pack_forming import FormedPack, form_packs
from cod_megatron.config import RunConfig
from cod_megatron.config.eval_suites import EvalSuite, parse_eval_suites
from cod_megatron.config.train_domains import TrainDomain


def eval_suites(cfg: RunConfig) -> list[EvalSuite]:
    """The run's ``eval.suites`` with its defaults (``env.setting``, ``rollout.pack_size``, ``eval.packs``)."""
    return parse_eval_suites(
        cfg.eval.suites, setting=cfg.env.setting, pack_size=cfg.rollout.pack_size, packs=cfg.eval.packs
    )


def pack_quotas(weights: Sequence[float], packs: int, step: int) -> list[int]:
    """``packs`` split by ``weights`` with the largest-remainder rule: every domain gets the floor of its share, the
    packs left go to the largest remainders. Ties (equal weights that do not divide ``packs``) go round-robin with
    the step, so over steps each tied domain gets its share; the same (weights, packs, step) always gives the same
    split."""
    total = sum(weights)
    shares = [w * packs / total for w in weights]
    quotas = [int(s) for s in shares]
    n = len(weights)
    order = sorted(range(n), key=lambda i: (-(shares[i] - quotas[i]), (i - step) % n))
    for i in order[: packs - sum(quotas)]:
        quotas[i] += 1
    return quotas


class PackSource:
    """Training packs per step and fixed held-out evaluation packs of the run's domains (one or a mixture)."""

    def __init__(self, domains: Domain | Sequence[Domain], cfg: RunConfig):
        self.domains = [domains] if isinstance(domains, Domain) else list(domains)
        self.cfg = cfg
        e = cfg.env
        by_name = {d.name: d for d in cfg.env.domains()}
        self.train_domains = [by_name.get(d.name, TrainDomain(d.name, e.setting)) for d in self.domains]
        self.rows = [
            d.make_rows(e.num_train_rows, e.data_seed, "train", t.setting)
            for d, t in zip(self.domains, self.train_domains, strict=True)
        ]
        self._before: tuple[int, list[int]] = (1, [0] * len(self.rows))

    @property
    def domain(self) -> Domain:
        """The first domain (evaluation and warm starts of a one-domain run)."""
        return self.domains[0]

    @property
    def train_rows(self) -> list[dict[str, Any]]:
        """The first domain's training rows."""
        return self.rows[0]

    def packs_before(self, step: int) -> list[int]:
        """Packs each domain took in steps 1 .. ``step`` - 1 (where its rows continue), kept from the last call so a
        run's steps cost one quota split each, not a sum over every earlier step."""
        cached, used = self._before
        if cached > step:
            cached, used = 1, [0] * len(self.rows)
        for s in range(cached, step):
            used = [u + q for u, q in zip(used, self.quotas(s), strict=True)]
        self._before = (step, used)
        return used

    def quotas(self, step: int) -> list[int]:
        """Packs per domain at trainer step ``step``."""
        weights = [t.weight for t in self.train_domains]
        return pack_quotas(weights, self.cfg.rollout.packs_per_step, step)

    def train_packs(self, step: int) -> list[Pack]:
        """``rollout.packs_per_step`` packs of ``rollout.pack_size`` for trainer step ``step`` (1-based), in domain
        order; a domain's rows continue where its previous step's stopped."""
        r = self.cfg.rollout
        used = self.packs_before(step)
        tasks = []
        for domain, rows, quota, done in zip(self.domains, self.rows, self.quotas(step), used, strict=True):
            start = done * r.pack_size
            tasks += [self._task(domain, rows, (start + i) % len(rows)) for i in range(quota * r.pack_size)]
        formed = form_packs(
            tasks, pack_size=r.pack_size, strategy=self.cfg.algorithm.packing_strategy, batch_id=f"train/{step}"
        )
        return [f.pack for f in formed]

    def eval_packs(self, packs: int, pack_size: int, domain: int = 0) -> list[Pack]:
        """``packs`` CoD packs of training domain ``domain``'s test rows (its setting); see :meth:`eval_formed`."""
        d = self.domains[domain]
        return [f.pack for f in self.eval_formed(d, self.train_domains[domain].setting, packs, pack_size)]

    def eval_formed(
        self, domain: Domain, setting: str, packs: int, pack_size: int, packing: str = "cod"
    ) -> list[FormedPack]:
        """``packs`` packs of distinct test rows of ``domain`` (a training domain or another: cross-domain suites)
        with stable seeds, the same at every evaluation, formed by ``packing`` (Ralph packs repeat one task). The
        evaluation data seed also salts the pack seeds, which draw HiddenKey's key and CodeLock's code (row indices
        repeat across data seeds); seed 0, that of every committed evaluation, keeps the reference's unsalted
        seeds."""
        e = self.cfg.env
        seed = e.data_seed if self.cfg.eval.data_seed is None else self.cfg.eval.data_seed
        rows = domain.make_rows(packs if packing == "ralph_full" else packs * pack_size, seed, "test", setting)
        tasks = [self._task(domain, rows, i) for i in range(len(rows))]
        salt = seed or None
        return form_packs(tasks, pack_size=pack_size, strategy=packing, stable_seed=True, stable_salt=salt)[:packs]

    @staticmethod
    def _task(domain: Domain, rows: list[dict[str, Any]], i: int) -> Task:
        return Task(taskset_id=domain.name, row=i, data=rows[i])
