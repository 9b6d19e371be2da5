"""The hint-use measurement every domain test runs: per-position means and the CoD gap's 95 % CI over packs."""

from cod_megatron.eval.stats import gap_stats, position_stats
from cod_megatron.rollout.text_lifecycle import run_text_lifecycle


def hint_use(env_cls, rows, policy_factory, n_packs, size=4):
    """Run ``n_packs`` lifecycles (pack seed i, rows ``size*i .. size*(i+1)``); returns (means, gap CI)."""
    rewards = [
        run_text_lifecycle(
            env_cls, rows[size * i : size * (i + 1)], pack_seed=i, policy=policy_factory(i)
        ).solve_rewards
        for i in range(n_packs)
    ]
    _, ci = gap_stats(rewards)
    return position_stats(rewards).mean, ci
