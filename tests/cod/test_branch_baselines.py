"""Branch baselines for update episodes (algorithm.update_branches, docs/update_branches.md): cases by hand."""

import pytest
import torch

from cod_megatron.cod.baselines import group_advantages
from cod_megatron.cod.branch_baselines import branch_advantages, branch_returns
from cod_megatron.cod.credit import assign_credit
from cod_megatron.cod.episode import Branch, Episode, Lifecycle, Pack, Task
from cod_megatron.cod.red import adaptive_red
from cod_megatron.cod.returns import lifecycle_returns
from cod_megatron.config import AlgorithmConfig
from tests.cod.toy_episodes import toy_episode


def ep(kind: str, j: int, reward: float, *, rollout: int = 0, branch: int | None = None, gen: int = 3) -> Episode:
    return toy_episode(kind, j, reward, rollout=rollout, gen=gen, branch=branch)


def lifecycle(rollout: int, r_x: list[float], r_z: list[float], keep: list[int], branches: list) -> Lifecycle:
    """``keep[j]``: the continuing branch at update j; ``branches``: (j, b, r_z, [(kind, position, reward), ...])."""
    pack = Pack(pack_id=0, seed=7, tasks=tuple(Task(taskset_id="toy", row=j) for j in range(len(r_x))))
    eps = [ep("solve", j, r, rollout=rollout) for j, r in enumerate(r_x)]
    eps += [ep("update", j, r, rollout=rollout, branch=keep[j]) for j, r in enumerate(r_z)]
    lc = Lifecycle(pack=pack, rollout=rollout, episodes=eps)
    for j, b, rz, later in branches:
        played = [ep("update", j, rz, rollout=rollout, branch=b)] + [ep(k, p, r, rollout=rollout) for k, p, r in later]
        lc.branches.append(Branch(position=j, index=b, episodes=played))
    return lc


def advantages(lc: Lifecycle) -> dict:
    out = {(e.kind, e.position, e.branch): e.advantage for e in lc.episodes}
    out |= {("branch", br.position, br.index): br.update.advantage for br in lc.branches}
    return out


def b2_k1_pair() -> tuple[Lifecycle, Lifecycle]:
    """S = 3, G = 2, B = 2, k = 1: two lifecycles with a format penalty on one branch each (hand-computed below)."""
    a = lifecycle(
        0,
        [1.0, 0.0, 1.0],
        [0.0, -0.1],
        keep=[1, 0],
        branches=[(0, 0, -0.1, [("solve", 1, 1.0)]), (1, 1, 0.0, [("solve", 2, 0.0)])],
    )
    b = lifecycle(
        1,
        [0.0, 1.0, 1.0],
        [0.0, 0.0],
        keep=[0, 0],
        branches=[(0, 1, 0.0, [("solve", 1, 1.0)]), (1, 1, -0.1, [("solve", 2, 1.0)])],
    )
    return a, b


def test_b2_k1_hand_computed_with_format_rewards():
    # S = 3, G = 2, B = 2, k = 1: R_b = (r_z_b + r_x_b[j+1]) / 2
    a, b = b2_k1_pair()
    res = assign_credit([a, b], AlgorithmConfig(adaptive_red=False, update_branches=2))
    # a, update 0: branch 0 (-0.1 + 1) / 2 = 0.45, branch 1 continues: (0 + r_x[1] = 0) / 2 = 0; mean 0.225
    # a, update 1: branch 0 continues: (-0.1 + r_x[2] = 1) / 2 = 0.45, branch 1: (0 + 0) / 2 = 0; mean 0.225
    # b, update 0: (0 + 1) / 2 both: A = 0; b, update 1: continuing (0 + 1) / 2 = 0.5, branch (-0.1 + 1) / 2 = 0.45
    # solves keep today's credit: R_x(a) = [2/3, 1/2, 1], R_x(b) = [2/3, 1, 1]
    want_a = {
        ("solve", 0, None): 0.0,
        ("solve", 1, None): -0.25,
        ("solve", 2, None): 0.0,
        ("branch", 0, 0): 0.225,
        ("update", 0, 1): -0.225,
        ("update", 1, 0): 0.225,
        ("branch", 1, 1): -0.225,
    }
    want_b = {
        ("solve", 0, None): 0.0,
        ("solve", 1, None): 0.25,
        ("solve", 2, None): 0.0,
        ("update", 0, 0): 0.0,
        ("branch", 0, 1): 0.0,
        ("update", 1, 0): 0.025,
        ("branch", 1, 1): -0.025,
    }
    for lc, want in ((a, want_a), (b, want_b)):
        got = advantages(lc)
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=1e-12), key
    # trained: 3 solves + 2 updates + 2 branch updates per lifecycle; branch solves are evaluation only
    assert len(res.episodes) == 14 and res.metrics["credit/branch_update_episodes"] == 8
    assert all(e.advantage is None for lc in (a, b) for br in lc.branches for e in br.episodes[1:])


def test_batch_std_spans_solve_returns_and_branch_returns():
    # the B2/k1 case above with std_normalization=batch: every advantage divided by the std of all the returns in play
    a, b = b2_k1_pair()
    assign_credit([a, b], AlgorithmConfig(adaptive_red=False, update_branches=2, std_normalization="batch"))
    solve_returns = [2 / 3, 1 / 2, 1.0, 2 / 3, 1.0, 1.0]
    branch_rets = [0.45, 0.0, 0.45, 0.0, 0.5, 0.5, 0.5, 0.45]
    scale = float(torch.tensor(solve_returns + branch_rets, dtype=torch.float64).std()) + 1e-6
    got = advantages(a)
    assert got[("solve", 1, None)] == pytest.approx(-0.25 / scale, abs=1e-12)
    assert got[("branch", 0, 0)] == pytest.approx(0.225 / scale, abs=1e-12)
    assert advantages(b)[("branch", 1, 1)] == pytest.approx(-0.025 / scale, abs=1e-12)


def test_b3_k2_hand_computed_with_a_shorter_horizon_at_the_last_update():
    # S = 3, B = 3, k = 2. Update 0: each branch plays tasks 1 and 2 (with its own update at 1 between, untrained):
    # R_b = (r_z + r_x[1] + r_x[2]) / 3. Update 1 has one task left, so K = 1: R_b = (r_z + r_x[2]) / 2.
    lc = lifecycle(
        0,
        [0.0, 1.0, 1.0],
        [0.0, 0.0],
        keep=[2, 0],
        branches=[
            (0, 0, -0.1, [("solve", 1, 1.0), ("update", 1, 0.0), ("solve", 2, 0.0)]),
            (0, 1, 0.0, [("solve", 1, 0.0), ("update", 1, -0.1), ("solve", 2, 0.0)]),
            (1, 1, 0.0, [("solve", 2, 1.0)]),
            (1, 2, -0.1, [("solve", 2, 0.0)]),
        ],
    )
    res = assign_credit([lc], AlgorithmConfig(adaptive_red=False, update_branches=3, branch_horizon=2))
    # update 0: R = [0.9 / 3, 0, (0 + 1 + 1) / 3] = [0.3, 0, 2/3], mean 29/90
    # update 1: R = [(0 + 1) / 2, (0 + 1) / 2, (-0.1 + 0) / 2] = [0.5, 0.5, -0.05], mean 19/60
    want = {
        ("branch", 0, 0): 0.3 - 29 / 90,
        ("branch", 0, 1): -29 / 90,
        ("update", 0, 2): 2 / 3 - 29 / 90,
        ("update", 1, 0): 0.5 - 19 / 60,
        ("branch", 1, 1): 0.5 - 19 / 60,
        ("branch", 1, 2): -0.05 - 19 / 60,
        ("solve", 0, None): 0.0,  # one rollout: no solve baseline spread
        ("solve", 1, None): 0.0,
        ("solve", 2, None): 0.0,
    }
    got = advantages(lc)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert len(res.episodes) == 3 + 2 + 4


def test_branch_returns_discounted_and_normalised_by_hand():
    r_z = torch.tensor([[0.0, -0.1]], dtype=torch.float64)
    r_x = torch.tensor([[[1.0, 1.0], [0.0, 1.0]]], dtype=torch.float64)
    # mean over K + 1 = 3 rewards; discounted: r_z + 0.5 r_x[0] + 0.25 r_x[1]
    assert branch_returns(r_z, r_x)[0].tolist() == pytest.approx([2 / 3, 0.9 / 3])
    assert branch_returns(r_z, r_x, returns="discounted", gamma=0.5)[0].tolist() == pytest.approx([0.75, 0.15])
    adv = branch_advantages(torch.tensor([[0.45, 0.0, 0.0, 0.45]], dtype=torch.float64))
    assert adv[0].tolist() == pytest.approx([0.225, -0.225, -0.225, 0.225])
    # group std: B = 2 always gives +-1/sqrt(2) (unbiased std of two values is |a - b| / sqrt 2)
    grouped = branch_advantages(torch.tensor([[0.45, 0.0]], dtype=torch.float64), std_normalization="group")
    assert grouped[0].tolist() == pytest.approx([2**-0.5, -(2**-0.5)], abs=1e-5)
    assert branch_advantages(torch.tensor([[0.3]])).tolist() == [[0.0]]
    with pytest.raises(ValueError, match="returns style"):
        branch_returns(r_z, r_x, returns="sliding_window_mean")


def test_full_horizon_continuing_branch_gets_todays_update_return():
    # k >= S - 1 - j: the continuing branch plays every task it can influence, so its R is cod.md 4.2's R_z
    lc = lifecycle(
        0,
        [1.0, 0.0, 1.0, 1.0],
        [-0.1, 0.0, 0.0],
        keep=[0, 0, 0],
        branches=[
            (
                0,
                1,
                0.0,
                [("solve", 1, 0.0), ("update", 1, 0.0), ("solve", 2, 0.0), ("update", 2, 0.0), ("solve", 3, 0.0)],
            ),
            (1, 1, 0.0, [("solve", 2, 0.0), ("update", 2, 0.0), ("solve", 3, 0.0)]),
            (2, 1, 0.0, [("solve", 3, 0.0)]),
        ],
    )
    _, ret_z = lifecycle_returns(torch.tensor([lc.solve_rewards()]), torch.tensor([lc.update_rewards()]))
    for j in range(3):
        _, r_z, r_x = lc.branch_point(j, 3 - j)
        got = branch_returns(torch.tensor([r_z]), torch.tensor([r_x]))
        assert float(got[0, 0]) == pytest.approx(float(ret_z[0, j]))
        assert float(got[0, 1]) == 0.0


@pytest.mark.parametrize("norm", ["none", "group", "batch"])
def test_one_branch_is_todays_credit_exactly(norm):
    # update_branches = 1 leaves today's path alone: the same numbers as returns -> group baselines -> RED by hand
    rewards = [([0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0]), ([1.0, 0.0, 0.0, 1.0], [0.0, -0.1, 0.0])]
    rewards += [([1.0, 1.0, 0.0, 0.0], [-0.1, -0.1, 0.0])]
    lcs = []
    for i, (r_x, r_z) in enumerate(rewards):
        pack = Pack(pack_id=0, seed=7, tasks=tuple(Task(taskset_id="toy", row=j) for j in range(4)))
        eps = [ep("solve", j, r, rollout=i, gen=2 + j) for j, r in enumerate(r_x)]
        eps += [ep("update", j, r, rollout=i, gen=5 + i) for j, r in enumerate(r_z)]
        lcs.append(Lifecycle(pack=pack, rollout=i, episodes=eps))
    cfg = AlgorithmConfig(update_branches=1, branch_horizon=2, std_normalization=norm)
    res = assign_credit(lcs, cfg)
    r_x = torch.tensor([r for r, _ in rewards], dtype=torch.float64)
    ret_x, ret_z = lifecycle_returns(r_x, torch.tensor([r for _, r in rewards], dtype=torch.float64))
    adv_x, adv_z = group_advantages(ret_x, ret_z, torch.zeros(3, dtype=torch.long), std_normalization=norm)
    order = [
        (i, e) for i, lc in enumerate(lcs) for e in sorted(lc.episodes, key=lambda e: (e.position, e.kind != "solve"))
    ]
    want = torch.tensor(
        [float((adv_x if e.kind == "solve" else adv_z)[i, e.position]) for i, e in order], dtype=torch.float64
    )
    want, _, _ = adaptive_red(want, torch.tensor([float(e.num_generated) for _, e in order], dtype=torch.float64))
    assert [e for _, e in order] == res.episodes
    assert [e.advantage for e in res.episodes] == want.tolist()  # bit for bit


def test_branched_credit_refuses_lifecycles_without_their_branches():
    lc = lifecycle(0, [1.0, 0.0], [0.0], keep=[0], branches=[])
    with pytest.raises(ValueError, match=r"update 0 has \[1\] branches, want B=2"):
        assign_credit([lc], AlgorithmConfig(update_branches=2))
