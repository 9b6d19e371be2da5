"""Returns over a lifecycle (docs/cod.md 4.2, 4.5, 4.6, 4.7)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cod_megatron.cod.returns import lifecycle_returns
from tests.cod import R_X, R_Z, SOLVE_RETURNS, UPDATE_RETURNS, assert_close

rewards = st.floats(-1.0, 1.0, allow_nan=False, width=64)


@st.composite
def lifecycles(draw, max_l=4, max_s=6):
    n, s = draw(st.integers(1, max_l)), draw(st.integers(1, max_s))
    r_x = torch.tensor(draw(st.lists(rewards, min_size=n * s, max_size=n * s)), dtype=torch.float64).view(n, s)
    m = n * (s - 1)
    r_z = torch.tensor(draw(st.lists(rewards, min_size=m, max_size=m)), dtype=torch.float64).view(n, s - 1)
    return r_x, r_z


def test_worked_example_4_6():
    solve, update = lifecycle_returns(R_X, R_Z)
    assert_close(solve, SOLVE_RETURNS)
    assert_close(update, UPDATE_RETURNS)


def test_discounted_by_hand():
    # rollout 1 of 4.6, gamma 0.5: R_x[0] = 1 + 0 + 0 + 0.125; R_z[1] = -0.1 + 0.5*0 + 0.25*1
    solve, update = lifecycle_returns(R_X, R_Z, returns="discounted", gamma=0.5)
    assert_close(solve[1], torch.tensor([1.125, 0.25, 0.5, 1.0], dtype=torch.float64))
    assert_close(update[1], torch.tensor([0.125, 0.15, 0.5], dtype=torch.float64))


def test_sliding_window_by_hand():
    # W = 2: R_x[j] = mean(r_x[j], r_x[j+1]) (last alone); R_z[j] = (r_z[j] + r_x[j+1]) / 2
    solve, update = lifecycle_returns(R_X, R_Z, returns="sliding_window_mean", window=2)
    assert_close(solve[0], torch.tensor([0.5, 1.0, 1.0, 1.0], dtype=torch.float64))
    assert_close(solve[1], torch.tensor([0.5, 0.0, 0.5, 1.0], dtype=torch.float64))
    assert_close(update[1], torch.tensor([0.0, -0.05, 0.5], dtype=torch.float64))


def test_outcome_and_own_ablations():
    solve, update = lifecycle_returns(R_X, R_Z, credit="outcome")
    assert_close(solve, torch.tensor([[0.75] * 4, [0.5] * 4], dtype=torch.float64))
    assert_close(update, torch.tensor([[0.75] * 3, [0.5] * 3], dtype=torch.float64))
    solve, update = lifecycle_returns(R_X, R_Z, credit="own")
    assert_close(solve, R_X)
    assert_close(update, R_Z)


def test_constant_rewards_property_4_7():
    # every r_x = c, r_z = 0: R_x = c, R_z[j] = c (S-1-j) / (S-j)
    s, c = 5, 0.7
    solve, update = lifecycle_returns(torch.full((3, s), c), torch.zeros(3, s - 1))
    assert_close(solve, torch.full((3, s), c))
    want = torch.tensor([c * (s - 1 - j) / (s - j) for j in range(s - 1)])
    assert_close(update, want.expand(3, s - 1))


def test_single_task_has_no_update_episodes():
    solve, update = lifecycle_returns(torch.tensor([[0.3], [1.0]]), torch.zeros(2, 0))
    assert_close(solve, torch.tensor([[0.3], [1.0]]))
    assert update.shape == (2, 0)


@settings(max_examples=40, deadline=None)
@given(lifecycles())
def test_last_position_return_is_own_reward(batch):
    r_x, r_z = batch
    solve, _ = lifecycle_returns(r_x, r_z)
    assert_close(solve[:, -1], r_x[:, -1])


@settings(max_examples=40, deadline=None)
@given(lifecycles(), st.sampled_from(["mean", "discounted", "sliding_window_mean"]), st.integers(0, 5))
def test_update_return_ignores_earlier_tasks(batch, style, j):
    # update episode j is written after task j: perturbing r_x[..j] and r_z[..j-1] must not change R_z[j]
    r_x, r_z = batch
    s = r_x.shape[1]
    if s < 2:
        return
    j = j % (s - 1)
    kw = {"returns": style, "gamma": 0.9, "window": 3}
    _, before = lifecycle_returns(r_x, r_z, **kw)
    r_x2, r_z2 = r_x.clone(), r_z.clone()
    r_x2[:, : j + 1] += 3.0
    r_z2[:, :j] -= 2.0
    _, after = lifecycle_returns(r_x2, r_z2, **kw)
    assert_close(after[:, j:], before[:, j:])


@settings(max_examples=40, deadline=None)
@given(lifecycles())
def test_mean_matches_naive_loop_and_wide_window(batch):
    r_x, r_z = batch
    s = r_x.shape[1]
    solve, update = lifecycle_returns(r_x, r_z)
    for i in range(r_x.shape[0]):
        for j in range(s):
            assert solve[i, j].item() == pytest.approx(sum(r_x[i, j:].tolist()) / (s - j))
        for j in range(s - 1):
            assert update[i, j].item() == pytest.approx((r_z[i, j].item() + sum(r_x[i, j + 1 :].tolist())) / (s - j))
    wide = lifecycle_returns(r_x, r_z, returns="sliding_window_mean", window=s)
    assert_close(wide[0], solve)
    assert_close(wide[1], update)


@pytest.mark.parametrize(
    ("r_x", "r_z", "kwargs", "match"),
    [
        (torch.zeros(2, 4), torch.zeros(2, 4), {}, r"r_z must be \[L, S-1\]"),
        (torch.zeros(2, 4), torch.zeros(3, 3), {}, r"r_z must be \[L, S-1\]"),
        (torch.zeros(4), torch.zeros(3), {}, r"r_x must be \[L, S\]"),
        (torch.tensor([[0.0, float("nan")]]), torch.zeros(1, 1), {}, "NaN"),
        (torch.zeros(1, 2), torch.zeros(1, 1), {"gamma": 0.0}, "gamma"),
        (torch.zeros(1, 2), torch.zeros(1, 1), {"window": 0}, "window"),
        (torch.zeros(1, 2), torch.zeros(1, 1), {"credit": "total"}, "credit"),
        (torch.zeros(1, 2), torch.zeros(1, 1), {"returns": "sum"}, "returns style"),
    ],
)
def test_bad_input_raises(r_x, r_z, kwargs, match):
    with pytest.raises(ValueError, match=match):
        lifecycle_returns(r_x, r_z, **kwargs)
