"""Rewards (docs/cod.md section 3): step penalty on positive outcomes only, format rewards, filtering."""

import pytest
import torch

from cod_megatron.cod.rewards import judge_format_keep_mask, solve_reward, total_reward, update_reward
from tests.cod import assert_close


@pytest.mark.parametrize("k", [1, 4, 8])
def test_frozenlake_success_in_k_of_8_steps(k):
    # cod.md 3.1: FrozenLake success in k of 8 steps scores 1 - 0.0125 k (token ramp is 0 with the 8B thresholds)
    assert solve_reward(1.0, [500] * k, turns_used=k, max_step_num=8) == pytest.approx(1 - 0.0125 * k)


def test_penalty_only_on_positive_outcome():
    assert solve_reward(0.0, [10, 10], turns_used=2, max_step_num=8) == 0.0
    assert solve_reward(-0.1, [10], turns_used=8, max_step_num=8) == -0.1


def test_token_ramp_when_thresholds_are_live():
    # turns of 150 and 300 tokens, ramp over [100, 300]: ramps 0.25 and 1 -> mean 0.625; steps 2/4 -> 0.5
    r = solve_reward(1.0, [150, 300], 2, 4, step_penalty_coef=0.2, len_zero_penalty=100, len_full_penalty=300)
    assert r == pytest.approx(1.0 - 0.2 * (0.625 + 0.5))


def test_penalised_reward_floored_at_zero():
    assert solve_reward(0.05, [10] * 8, turns_used=8, max_step_num=8, step_penalty_coef=1.0) == 0.0


def test_no_penalty_when_coef_zero():
    assert solve_reward(0.7, [10] * 8, turns_used=8, max_step_num=8, step_penalty_coef=0.0) == 0.7


def test_update_reward():
    assert update_reward(True) == 0.0
    assert update_reward(False) == pytest.approx(-0.1)
    assert update_reward(False, hint_penalty=0.3) == pytest.approx(-0.3)


def test_total_reward_decay():
    r_x = torch.tensor([[1.0, 0.0, 1.0], [0.5, 0.5, 0.5]])
    assert_close(total_reward(r_x), torch.tensor([2.0, 1.5]))
    # d^(S-1-j): weights 0.25, 0.5, 1 -> later tasks weigh more
    assert_close(total_reward(r_x, decay=0.5), torch.tensor([1.25, 0.875]))


def test_judge_format_keep_mask():
    keep = judge_format_keep_mask(torch.tensor([False, True, False]))
    assert keep.tolist() == [True, False, True]
    assert judge_format_keep_mask([True, True]).tolist() == [False, False]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"outcome": float("nan")}, "finite"),
        ({"max_step_num": 0}, "max_step_num"),
        ({"len_zero_penalty": 5, "len_full_penalty": 5}, "len_full_penalty"),
        ({"step_penalty_coef": -0.1}, "step_penalty_coef"),
    ],
)
def test_solve_reward_bad_input(kwargs, match):
    args = {"outcome": 1.0, "turn_response_tokens": [1], "turns_used": 1, "max_step_num": 8} | kwargs
    with pytest.raises(ValueError, match=match):
        solve_reward(**args)


def test_bad_input_other():
    with pytest.raises(ValueError, match="hint_penalty"):
        update_reward(False, hint_penalty=-1.0)
    with pytest.raises(ValueError, match="NaN"):
        total_reward(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="bool"):
        judge_format_keep_mask(torch.tensor([0, 1]))
