"""debug_cpu_code_lock: the recipe validates and plays a CodeLock pack through its own renderer, and two real steps
of the CoD loop run on CodeLock end to end."""

import json
import math

import pytest

import cod_recipes
from cod_megatron.config import finalize
from tests.cli import train_cli
from tests.rollout.recipe_play import play_oracle_pack


def test_recipe_validates_and_plays_code_lock():
    cfg = cod_recipes.get("debug_cpu_code_lock")
    finalize(cfg)  # raises a ConfigError naming the field on a bad value
    assert cfg.env.train_domains == ["code_lock"] and cfg.rollout.pack_size == 4 and cfg.eval.pack_sizes == [4, 8]
    assert cfg.env.warm_start_steps > 0 and cfg.algorithm.credit == "reward_to_go"
    assert cfg.optimizer.lr == 5e-4  # half debug_cpu's: docs/credit_domain.md, "A lower learning rate"

    # plays a CodeLock pack at token level as the loop does: the recipe's renderer, pack size, caps and vocabulary
    lc, _ = play_oracle_pack(cfg, "code_lock", pack_seed=11, oracle_seed=3)
    assert len(lc.solves()) == cfg.rollout.pack_size and len(lc.updates()) == cfg.rollout.pack_size - 1
    assert sum(lc.solve_rewards()) > 0  # the oracle earns reward: the answers parse in the recipe's vocabulary
    for episode in lc.episodes:
        assert max(episode.token_ids) < cfg.model.vocab_size, episode.kind  # every word is a token of the model
        assert len(episode.token_ids) <= cfg.rollout.max_model_len


@pytest.mark.slow
def test_two_steps_end_to_end_with_update_branches(tmp_path):
    """Issue 19's CI run: the multi-turn domain with branched update episodes (B 2, each branch plays 2 tasks).

    Also the loop's only update-branch run (the Ray path is `test_cod_loop`'s): in-process engines, to keep CI short.
    """
    small = ["env.warm_start_steps=3", "rollout.packs_per_step=2", "rollout.group_size=4", "eval.packs=4"]
    small.append("rollout.backend=inprocess")
    branches = ["algorithm.update_branches=2", "algorithm.branch_horizon=2"]
    out = tmp_path / "run"
    rows = train_cli(out, *small, *branches, "run.steps=2", "eval.interval=2", recipe="debug_cpu_code_lock")
    assert [r["step"] for r in rows] == [0, 1, 2]  # step 0 is the base model's evaluation
    for r in rows[1:]:
        assert {f"rollout/reward_pos_{j}" for j in range(4)} <= set(r) and "rollout/reward_pos_4" not in r
        assert math.isfinite(r["train/loss"]) and r["rollout/lifecycles"] == 8 and r["rollout/failed_lifecycles"] == 0
        assert r["credit/branch_update_episodes"] == 8 * 3 * 2  # 3 update positions x B per lifecycle
        assert 0 < r["rollout/branch_generated_tokens"] < r["rollout/generated_tokens"] == r["perf/generated_tokens"]
    report = json.loads((out / "eval" / "step_2.json").read_text())
    assert len(report["cod_s4"]["mean"]) == 4 and len(report["cod_s8"]["mean"]) == 8
