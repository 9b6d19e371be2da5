"""Per-position means and confidence intervals, and the CoD gap."""

import pytest

from cod_megatron.eval.stats import gap_stats, position_stats


def test_means_and_ci_by_hand():
    s = position_stats([[0.0, 1.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    assert s.mean == [0.5, 1.0] and s.n == 4
    half = 1.959963984540054 * (1 / 3) ** 0.5 / 2  # sample sd of [0, 1, 0, 1] is sqrt(1/3)
    assert s.ci95[0] == pytest.approx((0.5 - half, 0.5 + half))
    assert s.ci95[1] == (1.0, 1.0)


def test_gap_is_later_positions_minus_the_first():
    mean, (lo, hi) = gap_stats([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    assert mean == pytest.approx((1.0 - 0.5) / 2)
    assert lo < mean < hi


@pytest.mark.parametrize("bad", [[], [[1.0], [1.0, 2.0]]])
def test_rejects_ragged_or_empty(bad):
    with pytest.raises(ValueError):
        position_stats(bad)
