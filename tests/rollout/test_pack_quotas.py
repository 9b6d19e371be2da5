"""A mixture's packs per step: exact largest-remainder quotas, each pack within one domain, rows continuing per
domain (issue 32)."""

from __future__ import annotations

import pytest

import cod_recipes
from cod_envs import registry
from cod_megatron.config import apply_overrides, finalize
from cod_megatron.rollout.pack_source import PackSource, pack_quotas


@pytest.mark.parametrize(
    ("weights", "packs", "want"),
    [([1, 1], 8, [4, 4]), ([3, 1], 8, [6, 2]), ([0.5, 0.3, 0.2], 7, [4, 2, 1]), ([1], 5, [5]), ([1, 1], 1, None)],
)
def test_quotas_are_the_largest_remainder_split(weights, packs, want):
    got = pack_quotas(weights, packs, step=1)
    assert sum(got) == packs and all(q >= 0 for q in got)
    if want is not None:
        assert got == want
    assert pack_quotas(weights, packs, step=1) == got  # deterministic


def test_tied_remainders_go_round_robin_over_steps():
    """Three equal weights, 8 packs: two domains get 3 each step, and over 3 steps every domain gets 8."""
    per_step = [pack_quotas([1, 1, 1], 8, step) for step in range(1, 4)]
    assert all(sorted(q) == [2, 3, 3] for q in per_step)
    assert [sum(col) for col in zip(*per_step, strict=True)] == [8, 8, 8]
    one_pack = [pack_quotas([1, 1], 1, step) for step in range(1, 5)]
    assert [sum(col) for col in zip(*one_pack, strict=True)] == [2, 2]


def _source(domains: str, *overrides: str) -> PackSource:
    cfg = apply_overrides(cod_recipes.get("debug_cpu"), [f"env.train_domains={domains}", *overrides])
    finalize(cfg)
    return PackSource([registry.load(d.name) for d in cfg.env.domains()], cfg)


def test_a_mixture_step_holds_each_domain_by_its_quota_one_domain_per_pack():
    source = _source("[hidden_key@3,code_lock:hard]", "rollout.packs_per_step=8")
    for step in (1, 2):
        packs = source.train_packs(step)
        domains = [{t.taskset_id for t in p.tasks} for p in packs]
        assert all(len(d) == 1 for d in domains)
        assert [d.pop() for d in domains] == ["hidden_key"] * 6 + ["code_lock"] * 2
        assert len({p.seed for p in packs}) == 8
    pack_size = source.cfg.rollout.pack_size
    assert source.train_packs(2)[0].tasks[0].row == 6 * pack_size  # HiddenKey continues after its 6 packs of step 1
    assert source.train_packs(2)[6].tasks[0].row == 2 * pack_size
    assert source.train_packs(2)[6].tasks[0].data["chance_reward"] == 4.0  # CodeLock's own setting (hard)


def test_one_domain_takes_the_rows_and_seeds_it_always_took():
    source = _source("[hidden_key]")
    r = source.cfg.rollout
    n = r.packs_per_step * r.pack_size
    for step in (1, 7):
        rows = [t.row for p in source.train_packs(step) for t in p.tasks]
        assert rows == [((step - 1) * n + i) % len(source.train_rows) for i in range(n)]


def test_rows_continue_the_same_whatever_order_the_steps_are_asked_in():
    """A resumed run asks for its first step after a checkpoint, an evaluation script for any step: the rows of a
    step never depend on which steps were asked before."""
    fresh = _source("[hidden_key@3,code_lock:hard]", "rollout.packs_per_step=5")
    want = {step: [(t.taskset_id, t.row) for p in fresh.train_packs(step) for t in p.tasks] for step in (1, 2, 3, 9)}
    other = _source("[hidden_key@3,code_lock:hard]", "rollout.packs_per_step=5")
    for step in (9, 2, 3, 1, 9):
        assert [(t.taskset_id, t.row) for p in other.train_packs(step) for t in p.tasks] == want[step], step
