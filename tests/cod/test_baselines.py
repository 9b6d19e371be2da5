"""Group baselines and advantages (docs/cod.md 4.3, 4.6, 4.7)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cod_megatron.cod.baselines import STD_EPS, group_advantages
from tests.cod import SOLVE_ADV, SOLVE_RETURNS, UPDATE_ADV, UPDATE_RETURNS, assert_close


def test_worked_example_4_6():
    a_x, a_z = group_advantages(SOLVE_RETURNS, UPDATE_RETURNS, torch.tensor([7, 7]))
    assert_close(a_x, SOLVE_ADV)
    assert_close(a_z, UPDATE_ADV)


def test_packs_are_separate_groups_and_order_free():
    # pack 3 holds the 4.6 example, pack 1 a constant pack; rows interleaved; one pack has G = 3 (missing rollout)
    solve = torch.cat([SOLVE_RETURNS[:1], torch.full((3, 4), 0.2, dtype=torch.float64), SOLVE_RETURNS[1:]])
    update = torch.cat([UPDATE_RETURNS[:1], torch.full((3, 3), 0.1, dtype=torch.float64), UPDATE_RETURNS[1:]])
    a_x, a_z = group_advantages(solve, update, torch.tensor([3, 1, 1, 1, 3]))
    assert_close(a_x[[0, 4]], SOLVE_ADV)
    assert_close(a_z[[0, 4]], UPDATE_ADV)
    assert_close(a_x[1:4], torch.zeros(3, 4, dtype=torch.float64))
    assert_close(a_z[1:4], torch.zeros(3, 3, dtype=torch.float64))


def test_group_std_by_hand():
    # pack of G = 3 with solve returns 0, 1, 2 at S = 1: mean 1, unbiased std 1 -> A = -1, 0, 1 (/ (1 + eps))
    a_x, a_z = group_advantages(
        torch.tensor([[0.0], [1.0], [2.0]]), torch.zeros(3, 0), torch.tensor([0, 0, 0]), std_normalization="group"
    )
    assert_close(a_x, torch.tensor([[-1.0], [0.0], [1.0]]) / (1 + STD_EPS))
    assert a_z.shape == (3, 0)


def test_batch_std_by_hand():
    # one pack, S = 2: every column has mean 1 -> A_x = [[-1, 1], [1, -1]], A_z = [[1], [-1]];
    # batch std of all six returns (0, 2, 2, 0, 2, 0): unbiased, sqrt(6 / 5)
    solve, update = torch.tensor([[0.0, 2.0], [2.0, 0.0]]), torch.tensor([[2.0], [0.0]])
    a_x, a_z = group_advantages(solve, update, torch.tensor([5, 5]), std_normalization="batch")
    denom = (6 / 5) ** 0.5 + STD_EPS
    assert_close(a_x, torch.tensor([[-1.0, 1.0], [1.0, -1.0]]) / denom)
    assert_close(a_z, torch.tensor([[1.0], [-1.0]]) / denom)


def test_single_task_is_grpo():
    # S = 1: plain GRPO without std normalisation
    a_x, _ = group_advantages(torch.tensor([[1.0], [0.0], [0.0], [1.0]]), torch.zeros(4, 0), torch.zeros(4).long())
    assert_close(a_x, torch.tensor([[0.5], [-0.5], [-0.5], [0.5]]))


def test_singleton_group_raises_unless_allowed():
    with pytest.raises(ValueError, match=r"fewer than 2 rollouts"):
        group_advantages(torch.zeros(3, 2), torch.zeros(3, 1), torch.tensor([0, 0, 1]))
    a_x, a_z = group_advantages(torch.ones(3, 2), torch.ones(3, 1), torch.tensor([0, 0, 1]), min_group_size=1)
    assert a_x.abs().max() == 0 and a_z.abs().max() == 0


@st.composite
def grouped_returns(draw):
    n_packs, g, s = draw(st.integers(1, 3)), draw(st.integers(2, 4)), draw(st.integers(1, 4))
    n = n_packs * g
    vals = st.floats(-2.0, 2.0, allow_nan=False, width=64)
    solve = torch.tensor(draw(st.lists(vals, min_size=n * s, max_size=n * s)), dtype=torch.float64).view(n, s)
    m = n * (s - 1)
    update = torch.tensor(draw(st.lists(vals, min_size=m, max_size=m)), dtype=torch.float64).view(n, s - 1)
    perm = draw(st.permutations(list(range(n))))
    pack_ids = torch.arange(n_packs).repeat_interleave(g)[list(perm)]
    return solve, update, pack_ids


@settings(max_examples=40, deadline=None)
@given(grouped_returns(), st.sampled_from(["none", "group", "batch"]))
def test_advantages_sum_to_zero_per_group(batch, std_normalization):
    solve, update, pack_ids = batch
    a_x, a_z = group_advantages(solve, update, pack_ids, std_normalization=std_normalization)
    for p in pack_ids.unique():
        rows = pack_ids == p
        assert_close(a_x[rows].sum(0), torch.zeros(solve.shape[1], dtype=torch.float64))
        assert_close(a_z[rows].sum(0), torch.zeros(update.shape[1], dtype=torch.float64))
    if std_normalization == "none":  # independent naive loop
        for i in range(len(pack_ids)):
            rows = pack_ids == pack_ids[i]
            assert_close(a_x[i], solve[i] - solve[rows].mean(0))


@pytest.mark.parametrize(
    ("solve", "update", "ids", "kwargs", "match"),
    [
        (torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 0]), {}, r"update_returns must be \[L, S-1\]"),
        (torch.zeros(2, 3), torch.zeros(2, 2), torch.tensor([0, 0, 0]), {}, r"pack_ids must be \[L\]"),
        (torch.zeros(2, 3), torch.zeros(2, 2), torch.tensor([0.0, 0.0]), {}, "integer"),
        (torch.full((2, 3), float("nan")), torch.zeros(2, 2), torch.tensor([0, 0]), {}, "NaN"),
        (torch.zeros(2, 3), torch.zeros(2, 2), torch.tensor([0, 0]), {"std_normalization": "x"}, "std_normalization"),
        (torch.zeros(1, 3), torch.zeros(1, 2), torch.tensor([4]), {}, "fewer than 2"),
    ],
)
def test_bad_input_raises(solve, update, ids, kwargs, match):
    with pytest.raises(ValueError, match=match):
        group_advantages(solve, update, ids, **kwargs)
