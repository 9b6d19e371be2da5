"""Update branches in the rollout (algorithm.update_branches): branch tasks played, lock-step rounds, the continuing
branch, seeds and the token counter, on HiddenKey through the real manager, batcher and runner."""

import pytest

from cod_envs import registry
from cod_megatron.cod.credit import assign_credit
from cod_megatron.config import AlgorithmConfig
from cod_megatron.engines.interface import Generation, SamplingParams, TextPolicyEngine
from cod_megatron.rollout.manager import lifecycle_seed
from cod_megatron.rollout.metrics import rollout_metrics
from cod_megatron.rollout.token_play import run_token_lifecycle
from cod_megatron.rollout.update_branches import continuing_branch
from tests.rollout.test_manager import RENDERER, EchoEngine, _manager, _packs

KEYS = ["k0", "k1", "k2", "k3"]


class HintEngine(EchoEngine):
    """A scripted policy on token ids: an update writes key ``k[seed % 4]``; a solve answers its hint's key (else k0).

    Branches written from one prompt (different seeds) thus write different hints, and a branch's solves show
    which hint it played from.
    """

    def generate_batch(self, requests):
        self.batches.append(len(requests))
        self.seeds += [r.params.seed for r in requests]
        out = []
        for r in requests:
            words = RENDERER.decode_response(r.prompt_ids).split()
            if words[1] == "update":
                answer = KEYS[r.params.seed % 4]
            else:
                hint = words[words.index(":") + 1]
                answer = hint if hint in KEYS else KEYS[0]
            ids = [*RENDERER.encode(answer), RENDERER.end_of_turn_id][: r.params.max_new_tokens]
            out.append(Generation(token_ids=ids, logprobs=[-0.5] * len(ids)))
        return out


def _hint_of_solve(episode) -> str:
    """The hint word a solve episode's prompt showed."""
    words = RENDERER.decode_response(episode.token_ids).split()
    return words[words.index(":") + 1]


def _written(episode) -> str:
    """The first word an update episode wrote."""
    return RENDERER.decode_response(
        [t for t, g in zip(episode.token_ids, episode.generated, strict=True) if g]
    ).split()[0]


@pytest.mark.parametrize("branches", [1, 3])
def test_branches_play_their_tasks_in_the_same_lock_step_rounds_and_are_counted(branches):
    engine = EchoEngine()
    res = _manager([engine]).run(_packs(2, size=4), 2, step=1, update_branches=branches, branch_horizon=2)
    assert len(res.lifecycles) == 4 and res.failed == 0
    if branches == 1:  # today's rollout: 7 rounds of the 4 lifecycles, no branch
        assert engine.batches == [4] * 7 and all(not lc.branches for lc in res.lifecycles)
    else:
        # main: s0 u0 s1 u1 s2 u2 s3 (7 rounds). Branches of update 0 answer in rounds 2-5 (u0 s1 u1 s2), of update 1
        # in rounds 4-7 (u1 s2 u2 s3), of update 2 in rounds 6-7 (u2 s3, one task left): 2 threads each
        assert engine.batches == [4, 12, 12, 20, 20, 20, 20] and res.engine_calls == 7
    for lc in res.lifecycles:
        assert len(lc.solves()) == 4 and len(lc.updates()) == 3  # the lifecycle itself is whole
        assert len(lc.branches) == (branches - 1) * 3
        for br in lc.branches:
            horizon = min(2, 3 - br.position)
            assert [(e.kind, e.position) for e in br.episodes][::2] == [("update", br.position)] + [
                ("update", p) for p in range(br.position + 1, br.position + horizon)
            ]
            assert [e.position for e in br.episodes if e.kind == "solve"] == list(
                range(br.position + 1, br.position + 1 + horizon)
            )
    # EchoEngine: a solve is 1 token (k0), an update 2 (k0 <eos>). Per lifecycle 4 + 3 * 2 = 10 own tokens; its
    # branches 2 * (6 + 6 + 3) = 30 (update 0: u s u s, update 1: u s u s, update 2: u s)
    metrics = rollout_metrics(res)
    assert metrics["rollout/branch_generated_tokens"] == (0 if branches == 1 else 4 * 30)
    assert metrics["rollout/generated_tokens"] == 4 * 10 + metrics["rollout/branch_generated_tokens"]
    assert len(set(engine.seeds)) == len(engine.seeds)  # every call, branches included, samples its own stream


def test_the_lifecycle_continues_from_the_seeded_branch_and_each_branch_from_its_own_hint():
    engine = HintEngine()
    packs = _packs(2, size=4)
    res = _manager([engine]).run(packs, 3, step=1, update_branches=3, branch_horizon=1)
    choices = []
    for lc in res.lifecycles:
        seed = lifecycle_seed(3, 1, lc.pack.seed, lc.rollout)
        solves = {e.position: e for e in lc.solves()}
        for update in lc.updates():
            j = update.position
            keep = continuing_branch(seed, j, 3)
            choices.append(keep)
            assert update.branch == keep
            assert sorted(br.index for br in lc.branches if br.position == j) == sorted({0, 1, 2} - {keep})
            # the lifecycle's next task shows the hint its own (continuing) update wrote
            assert _hint_of_solve(solves[j + 1]) == _written(update)
        for br in lc.branches:
            (solve,) = [e for e in br.episodes if e.kind == "solve"]
            assert _hint_of_solve(solve) == _written(br.update) and br.update.branch == br.index
            assert br.update.token_ids[: -sum(br.update.generated)] == next(
                u.token_ids[: -sum(u.generated)] for u in lc.updates() if u.position == br.position
            )  # the same prompt as the lifecycle's own update episode
    assert len(set(choices)) == 3  # the continuing branch is drawn, not fixed
    again = HintEngine()
    rerun = _manager([again]).run(packs, 3, step=1, update_branches=3, branch_horizon=1)
    assert sorted(again.seeds) == sorted(engine.seeds)
    assert [br.solve_rewards() for lc in rerun.lifecycles for br in lc.branches] == [
        br.solve_rewards() for lc in res.lifecycles for br in lc.branches
    ]
    # credit runs on the manager's output: every update episode against its own 3 branches
    credit = assign_credit(res.lifecycles, AlgorithmConfig(adaptive_red=False, update_branches=3))
    assert len(credit.episodes) == 6 * (4 + 3 + 2 * 3)
    for lc in res.lifecycles:
        for j in range(3):
            ups = [u for u in lc.updates() if u.position == j] + [b.update for b in lc.branches if b.position == j]
            assert abs(sum(u.advantage for u in ups)) < 1e-12


def test_a_failed_round_with_branches_in_flight_retries_whole_lifecycles_without_hanging():
    # call 3 holds the lifecycles' solve 1 and their branches' first solves: every thread sees the failure, the
    # branch threads close their handles, and the retried lifecycles come back whole, branches included
    engine = EchoEngine(fail_calls={3})
    res = _manager([engine]).run(_packs(2, size=3), 2, step=1, update_branches=2, branch_horizon=1)
    assert res.failed == 0 and res.retries == 4 and res.restarts == 1
    for lc in res.lifecycles:
        assert len(lc.solves()) == 3 and len(lc.updates()) == 2
        assert [(br.position, len(br.episodes)) for br in lc.branches] == [(0, 2), (1, 2)]
    # the failed round sent 4 solves + 4 branch solves; the whole retry is 4 x (5 own + 2 x 2 branch) requests
    assert engine.batches[:2] == [4, 8] and sum(engine.batches[2:]) == 36


def test_an_engine_that_cannot_fork_plays_the_branches_in_the_lifecycles_own_thread():
    # run_token_lifecycle straight on a text policy (no batcher): branches run at once, in order, same structure
    domain = registry.load("hidden_key")
    pack = _packs(1, size=3)[0]
    engine = TextPolicyEngine(domain.policies["oracle"](5), RENDERER.encode, RENDERER.end_of_turn_id)
    params = SamplingParams(max_new_tokens=8, seed=11)
    lc, trace = run_token_lifecycle(
        domain.env, pack, 0, engine=engine, renderer=RENDERER, params=params, update_branches=2, branch_horizon=2
    )
    assert len(trace.episodes) == 5 and [br.position for br in lc.branches] == [0, 1]
    assert [[(e.kind, e.position) for e in br.episodes] for br in lc.branches] == [
        [("update", 0), ("solve", 1), ("update", 1), ("solve", 2)],
        [("update", 1), ("solve", 2)],
    ]
    assert [u.branch for u in lc.updates()] == [continuing_branch(11, j, 2) for j in range(2)]
    assert {br.index for br in lc.branches if br.position == 0} == {1 - continuing_branch(11, 0, 2)}
