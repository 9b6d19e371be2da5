"""Micro-batch planner: every token once, budget respected, segments whole, equal counts, balanced ranks."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cod_megatron.data.planner import plan_micro_batches


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 300), max_size=60),
    budget=st.integers(1, 400),
    dp=st.integers(1, 5),
    overlong=st.sampled_from(["truncate", "drop"]),
)
def test_every_kept_segment_once_within_budget_equal_counts(lengths, budget, dp, overlong):
    plan = plan_micro_batches(lengths, budget=budget, dp=dp, overlong=overlong)
    placed = [i for rank in plan.ranks for mb in rank for i in mb]
    expected = [i for i, n in enumerate(lengths) if n > 0 and (n <= budget or overlong == "truncate")]
    assert sorted(placed) == expected  # each kept segment exactly once, never split across micro-batches
    assert all(sum(plan.lengths[i] for i in mb) <= budget for rank in plan.ranks for mb in rank)
    assert len({len(rank) for rank in plan.ranks}) == 1
    over = [i for i, n in enumerate(lengths) if n > budget]
    assert (plan.truncated if overlong == "truncate" else plan.dropped) == over
    assert sum(plan.lengths) == sum(
        min(n, budget) if overlong == "truncate" else (n if n <= budget else 0) for n in lengths
    )


def test_micro_batches_are_full_and_balanced():
    plan = plan_micro_batches([6, 4, 5, 5, 3, 7], budget=10, dp=1)
    assert plan.micro_batches_per_rank == 3  # 7+3, 6+4, 5+5
    assert sorted(sum(plan.lengths[i] for i in mb) for mb in plan.ranks[0]) == [10, 10, 10]


def test_ranks_are_balanced_and_padded_to_equal_counts():
    plan = plan_micro_batches([9, 8, 7, 2, 2, 1], budget=10, dp=2)
    assert sorted(plan.rank_tokens()) == [14, 15]  # bins 9 | 8 | 7 | 2+2+1, two per rank
    plan = plan_micro_batches([5, 5, 5], budget=5, dp=2)
    assert plan.micro_batches_per_rank == 2 and [] in plan.ranks[1]


@pytest.mark.parametrize("kw", [dict(budget=0), dict(budget=4, dp=0)])
def test_rejects_bad_arguments(kw):
    with pytest.raises(ValueError):
        plan_micro_batches([1, 2], **kw)
