"""Adaptive RED (docs/cod.md 5.2, 5.3): bisection for T, re-weighting, the floor, untouched non-negative batches."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cod_megatron.cod.red import adaptive_red
from tests.cod import SOLVE_ADV, SOLVE_TOKENS, UPDATE_ADV, UPDATE_TOKENS, assert_close

T_MIN, T_MAX, WIDTH = 0.8, 100.0, 0.05


def f_naive(adv: list[float], tokens: list[float], t: float) -> float:
    """f(T) = sum_s A_s exp(A_s / T) n_s, written out independently of the module."""
    return sum(a * math.exp(a / t) * n for a, n in zip(adv, tokens, strict=True))


def root_naive(adv: list[float], tokens: list[float], lo: float = 1e-3, hi: float = 1e3) -> float:
    """Textbook bisection to machine precision (f is decreasing in T)."""
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f_naive(adv, tokens, mid) > 0 else (lo, mid)
    return 0.5 * (lo + hi)


def example_5_3() -> tuple[torch.Tensor, torch.Tensor]:
    adv = torch.cat([SOLVE_ADV.flatten(), UPDATE_ADV.flatten()])
    tokens = torch.cat([SOLVE_TOKENS.flatten(), UPDATE_TOKENS.flatten()])
    return adv, tokens


def test_example_5_3():
    adv, tokens = example_5_3()
    assert tokens.sum() == 1720
    assert (adv * tokens).sum().item() == pytest.approx(139.667 - 161.5, abs=1e-3)
    assert f_naive(adv.tolist(), tokens.tolist(), T_MIN) == pytest.approx(73.3, abs=0.05)
    assert f_naive(adv.tolist(), tokens.tolist(), T_MAX) == pytest.approx(-21.1, abs=0.05)
    root = root_naive(adv.tolist(), tokens.tolist())
    assert root == pytest.approx(3.4517, abs=1e-4)

    new, t, metrics = adaptive_red(adv, tokens)
    assert t is not None and abs(t - root) < WIDTH
    assert metrics["red/applied"] == 1.0 and metrics["red/floor_hit"] == 0.0
    assert metrics["red/mean_adv_before"] == pytest.approx(-21.8333 / 1720, rel=1e-4)
    assert abs(metrics["red/mean_adv_after"]) < 1e-4
    # the spec's table at the exact root; T differs from it by < 0.05, so values agree to ~1e-3
    table = {0.125: 0.1296, 1 / 3: 0.3671, 0.25: 0.2688, 11 / 60: 0.1933, 0.0: 0.0}
    for a, want in table.items():
        for sign in (1, -1) if a else (1,):
            got = new[torch.isclose(adv, torch.tensor(sign * a, dtype=torch.float64))]
            ref = want if sign > 0 else {0.125: -0.1206, 1 / 3: -0.3026, 0.25: -0.2325, 11 / 60: -0.1738}[a]
            assert_close(got, torch.full_like(got, ref), atol=1e-3, rtol=0)


def test_closed_form_two_samples():
    # A = +0.5 x 100 tokens, -0.5 x 300: root T = 1 / ln 3; new advantages 0.5 sqrt(3), -0.5 / sqrt(3)
    new, t, _ = adaptive_red(torch.tensor([0.5, -0.5], dtype=torch.float64), torch.tensor([100.0, 300.0]).double())
    assert abs(t - 1 / math.log(3)) < WIDTH
    assert_close(new, torch.tensor([0.5 * 3**0.5, -0.5 / 3**0.5], dtype=torch.float64), atol=0.03, rtol=0)
    assert_close(new, torch.tensor([0.5 * math.exp(0.5 / t), -0.5 * math.exp(-0.5 / t)]).double())


def test_floor_when_root_below_t_min():
    # f(0.8) < 0: the reference returns 0.8 + 99.2 / 2^11 = 0.8484375 and the mean stays negative
    adv, tokens = torch.tensor([1.0, -0.1], dtype=torch.float64), torch.tensor([1.0, 1000.0], dtype=torch.float64)
    new, t, metrics = adaptive_red(adv, tokens)
    assert t == pytest.approx(0.8484375, abs=1e-12)
    assert metrics["red/floor_hit"] == 1.0
    assert metrics["red/mean_adv_before"] < metrics["red/mean_adv_after"] < 0
    assert_close(new, adv * torch.exp(adv / 0.8484375))


def test_ceiling_when_mean_is_barely_negative():
    # sum A n = 33.25 + 15 + 19 - 67.375 = -0.125 < 0, but f(100) ~ -0.125 + sum n A^2 / 100 > 0 (cod.md 5.2 says
    # this cannot happen; it can): the reference's bisection then returns 99.9515625
    adv = torch.tensor([0.875, 1.0, 0.0, 1.0, -0.875], dtype=torch.float64)
    tokens = torch.tensor([38.0, 15.0, 5.0, 19.0, 77.0], dtype=torch.float64)
    assert (adv * tokens).sum().item() == pytest.approx(-0.125)
    new, t, metrics = adaptive_red(adv, tokens)
    assert t == pytest.approx(99.9515625, abs=1e-12)
    assert metrics["red/ceiling_hit"] == 1.0 and metrics["red/floor_hit"] == 0.0 and metrics["red/mean_adv_after"] > 0


def test_mean_zero_up_to_rounding_is_left_untouched():
    # group-baselined advantages sum to exactly 0; in float64 this one sums to -2.8e-17. Treated as negative, RED
    # would fire at the ceiling T = 99.95 (f(100) > 0) on rounding noise alone, in a different fraction of steps
    # depending on summation order
    adv = torch.tensor([0.3, -0.1, -0.2], dtype=torch.float64)
    tokens = torch.ones(3, dtype=torch.float64)
    assert float((adv * tokens).sum()) < 0
    new, t, metrics = adaptive_red(adv, tokens)
    assert t is None and torch.equal(new, adv) and metrics["red/applied"] == 0.0


def test_all_negative_hits_floor():
    _, t, metrics = adaptive_red(torch.tensor([-0.2, -0.4]), torch.tensor([3.0, 5.0]))
    assert t == pytest.approx(0.8484375) and metrics["red/floor_hit"] == 1.0


def test_per_token_form_equals_per_sample_form():
    adv, tokens = example_5_3()
    per_token = adv.repeat_interleave(tokens.long())
    new_s, t_s, _ = adaptive_red(adv, tokens)
    new_t, t_t, _ = adaptive_red(per_token, torch.ones_like(per_token))
    assert t_s == pytest.approx(t_t)
    assert_close(new_t, new_s.repeat_interleave(tokens.long()))


samples = st.lists(
    st.tuples(st.floats(-1.0, 1.0, allow_nan=False, width=64), st.integers(1, 400)), min_size=1, max_size=16
)


@settings(max_examples=60, deadline=None)
@given(samples)
def test_red_balances_or_hits_floor(batch):
    adv_l, tok_l = [a for a, _ in batch], [float(n) for _, n in batch]
    n_tokens = sum(tok_l)
    adv, tokens = torch.tensor(adv_l, dtype=torch.float64), torch.tensor(tok_l, dtype=torch.float64)
    mean_before = sum(a * n for a, n in zip(adv_l, tok_l, strict=True)) / n_tokens
    new, t, metrics = adaptive_red(adv, tokens)
    scale = sum(abs(a) * n for a, n in zip(adv_l, tok_l, strict=True))
    if mean_before * n_tokens >= -1e-12 * scale:  # non-negative, or zero up to rounding
        assert t is None and metrics["red/applied"] == 0.0
        assert torch.equal(new, adv)
        return
    assert t is not None and T_MIN <= t <= T_MAX
    want = [a * math.exp(a / t) for a in adv_l]
    assert_close(new, torch.tensor(want, dtype=torch.float64))
    mean_after = sum(a * n for a, n in zip(want, tok_l, strict=True)) / n_tokens
    assert metrics["red/mean_adv_after"] == pytest.approx(mean_after, abs=1e-12)
    if f_naive(adv_l, tok_l, T_MIN) < 0:  # root below the floor: as close to 0 as T >= T_MIN allows
        assert t == pytest.approx(0.8484375) and mean_after < 0 and metrics["red/floor_hit"] == 1.0
        return
    if f_naive(adv_l, tok_l, T_MAX) > 0:  # tiny negative mean: root above the ceiling, T = 100 - 99.2 / 2^11
        assert t == pytest.approx(99.9515625) and mean_after > 0 and metrics["red/ceiling_hit"] == 1.0
        return
    # otherwise the root lies within one final bracket width of T, so the mean is bounded by f across it
    hi_side = f_naive(adv_l, tok_l, max(t - WIDTH, T_MIN))
    lo_side = f_naive(adv_l, tok_l, t + WIDTH)
    assert lo_side <= 0 <= hi_side
    assert abs(mean_after) * n_tokens <= hi_side - lo_side + 1e-9


@settings(max_examples=30, deadline=None)
@given(samples)
def test_non_negative_mean_untouched(batch):
    adv = torch.tensor([abs(a) for a, _ in batch], dtype=torch.float64)
    tokens = torch.tensor([float(n) for _, n in batch], dtype=torch.float64)
    new, t, metrics = adaptive_red(adv, tokens)
    assert t is None and torch.equal(new, adv) and metrics["red/mean_adv_after"] >= 0


@pytest.mark.parametrize(
    ("adv", "tokens", "kwargs", "match"),
    [
        (torch.zeros(3), torch.ones(2), {}, "must match"),
        (torch.tensor([float("nan"), -1.0]), torch.ones(2), {}, "NaN"),
        (torch.tensor([1.0, -1.0]), torch.tensor([1.0, -2.0]), {}, ">= 0"),
        (torch.tensor([1.0, -1.0]), torch.zeros(2), {}, "positive"),
        (torch.tensor([1.0, -1.0]), torch.ones(2), {"t_min": 5.0, "t_max": 1.0}, "t_min < t_max"),
    ],
)
def test_bad_input_raises(adv, tokens, kwargs, match):
    with pytest.raises(ValueError, match=match):
        adaptive_red(adv, tokens, **kwargs)
