"""Per-position means and confidence intervals, and the CoD gap."""

import pytest

from cod_megatron.eval.stats import gap_stats, position_stats


def test_means_and_ci_by_hand():
    s = position_stats([[0.0, 1.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    assert s.mean == [0.5, 1.0] and s.n == 4
    half = 3.182 * (1 / 3) ** 0.5 / 2  # t with 3 degrees of freedom; the sample sd of [0, 1, 0, 1] is sqrt(1/3)
    assert s.ci95[0] == pytest.approx((max(0.5 - half, 0.0), min(0.5 + half, 1.0)))  # cut to the rewards' range
    assert s.ci95[1] == (1.0, 1.0)


def test_gap_is_later_positions_minus_the_first():
    mean, (lo, hi) = gap_stats([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    assert mean == pytest.approx((1.0 - 0.5) / 2)
    assert lo < mean < hi


@pytest.mark.parametrize("bad", [[], [[1.0], [1.0, 2.0]]])
def test_rejects_ragged_or_empty(bad):
    with pytest.raises(ValueError):
        position_stats(bad)


def test_t_quantiles_with_n_minus_1_degrees_of_freedom():
    from cod_megatron.eval.stats import t975

    assert (t975(1), t975(3), t975(30), t975(31)) == (12.706, 3.182, 2.042, 1.959963984540054)
    with pytest.raises(ValueError):
        t975(0)


def test_an_interval_stays_inside_the_rewards_range():
    s = position_stats([[1.0]] * 9 + [[0.0]])  # mean 0.9; a t interval would reach above 1
    lo, hi = s.ci95[0]
    assert 0.0 <= lo < 0.9 < hi == 1.0


def test_an_interval_of_no_width_says_why():
    s = position_stats([[1.0, 0.0], [1.0, 1.0]])
    assert s.ci95[0] == (1.0, 1.0) and s.notes == ["all 2 values are 1", None]
    assert position_stats([[0.5, 0.5]]).notes == ["1 value: no spread to estimate"] * 2


def test_t_interval_by_hand_where_the_range_does_not_bind():
    values = [i / 10 for i in range(10)]  # mean 0.45, sample sd sqrt(11/120)
    half = 2.262 * (11 / 120) ** 0.5 / 10**0.5  # t with 9 degrees of freedom
    s = position_stats([[v] for v in values])
    assert s.ci95[0] == pytest.approx((0.45 - half, 0.45 + half)) and s.notes == [None]
