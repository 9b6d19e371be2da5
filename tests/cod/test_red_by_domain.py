"""Adaptive RED per domain (``algorithm.red_level=domain``): one temperature per domain, by hand (issue 32)."""

from __future__ import annotations

import math

import pytest
import torch

from cod_megatron.cod.red import RED_TOLERANCE, adaptive_red, adaptive_red_by_group


def test_each_domain_gets_its_own_temperature_by_hand():
    """Domain a: advantages (1, -1), mean 0: untouched. Domain b: (1, -2), one token each: f(T) = e^(1/T) -
    2 e^(-2/T) = 0 at T = 3 / ln 2 = 4.328, so b becomes (e^(1/T), -2 e^(-2/T)) with a zero sum."""
    adv = torch.tensor([1.0, -1.0, 1.0, -2.0], dtype=torch.float64)
    weights = torch.ones(4, dtype=torch.float64)
    new, metrics = adaptive_red_by_group(adv, weights, ["a", "a", "b", "b"])
    assert new[:2].tolist() == [1.0, -1.0] and metrics["a/red/applied"] == 0.0
    t = metrics["b/red/temperature"]
    assert metrics["b/red/applied"] == 1.0 and abs(t - 3 / math.log(2)) < RED_TOLERANCE
    assert new[2:].tolist() == pytest.approx([math.exp(1 / t), -2 * math.exp(-2 / t)], rel=1e-12)
    assert abs(float(new[2:].sum())) < 0.02  # b's token-weighted mean is about 0 again
    batch, _, _ = adaptive_red(adv, weights)  # over the whole batch (mean -1/4) domain a is re-weighted too
    assert batch[:2].tolist() != [1.0, -1.0]


def test_one_group_is_batch_red_and_a_group_without_tokens_is_left_alone():
    adv = torch.tensor([0.5, -1.5, 0.2], dtype=torch.float64)
    weights = torch.tensor([3.0, 2.0, 0.0], dtype=torch.float64)
    new, _ = adaptive_red_by_group(adv, weights, ["x", "x", "y"])
    want, _, _ = adaptive_red(adv[:2], weights[:2])
    assert new[:2].tolist() == want.tolist() and new[2].item() == 0.2
    with pytest.raises(ValueError, match="groups"):
        adaptive_red_by_group(adv, weights, ["x"])
