"""The hint-use measurement every domain test runs: per-position means and the CoD gap's 95 % CI over packs."""

from cod_megatron.eval.stats import gap_stats, position_stats
from cod_megatron.rollout.text_play import run_text_lifecycle


def lifecycles(env_cls, rows, policy_factory, n_packs, size=4, **kwargs):
    """``n_packs`` lifecycles: pack seed i on rows ``size*i .. size*(i+1)`` with ``policy_factory(i)``."""
    return [
        run_text_lifecycle(env_cls, rows[size * i : size * (i + 1)], pack_seed=i, policy=policy_factory(i), **kwargs)
        for i in range(n_packs)
    ]


def hint_use(env_cls, rows, policy_factory, n_packs, size=4):
    """Run ``n_packs`` lifecycles (pack seed i, rows ``size*i .. size*(i+1)``); returns (means, gap CI)."""
    rewards = [lc.solve_rewards for lc in lifecycles(env_cls, rows, policy_factory, n_packs, size)]
    _, ci = gap_stats(rewards)
    return position_stats(rewards).mean, ci


def oracle_rises_and_hint_blind_is_flat(gaps, oracle, hint_blind, n_packs, oracle_gap_above):
    """``gaps(policy_factory, n_packs) -> (means, CI)``: the oracle's gap CI lies above ``oracle_gap_above``,
    hint-blind's contains 0, and both score the same at position 0 (same solver and seeds, no hint yet).
    Returns the oracle's per-position means."""
    means, (lo, hi) = gaps(oracle, n_packs)
    assert lo > oracle_gap_above, (means, lo, hi)
    blind_means, (blo, bhi) = gaps(hint_blind, n_packs)
    assert blo <= 0.0 <= bhi, (blind_means, blo, bhi)
    assert means[0] == blind_means[0]
    return means
