"""Episode packing: one segment per (multi-turn) episode, shifted loss fields, every token once, counters."""

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cod_megatron.cod.episode import Episode
from cod_megatron.data.denominators import step_denominators
from cod_megatron.data.episodes import pack_episodes


def episode(turns: list[tuple[int, int]], *, seed: int = 0, advantage: float = 1.0, position: int = 0) -> Episode:
    """An episode of (observation length, response length) turns with random ids and log-probs."""
    rng = random.Random(seed)
    calls = []
    for obs, resp in turns:
        ids = [rng.randrange(1, 100) for _ in range(obs + resp)]
        calls.append((ids[:obs], ids[obs:], [-rng.random() for _ in range(resp)]))
    ep = Episode.from_turns(calls, pack_id=0, rollout=0, kind="solve", position=position)
    ep.advantage = advantage
    return ep


def test_multi_turn_episode_is_one_segment_with_shifted_fields():
    ep = episode([(3, 2), (2, 2)], seed=1, advantage=0.5)
    [[mb]], stats = pack_episodes([ep], budget=64)
    assert mb.num_segments == 1 and mb.tokens.tolist() == ep.token_ids
    # position p is trained iff token p + 1 was generated
    assert mb.loss_mask.tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 0]
    assert mb.labels[:-1].tolist() == ep.token_ids[1:]
    assert torch.allclose(
        mb.rollout_logprobs[mb.loss_mask > 0], torch.tensor([ep.rollout_logprobs[i] for i in (3, 4, 7, 8)])
    )
    assert mb.sample_ids[mb.loss_mask > 0].tolist() == [0, 0, 1, 1]
    assert stats.loss_tokens == ep.num_generated == 4


def test_eight_turn_episode_saves_the_re_encoded_prefixes():
    ep = episode([(300, 60)] + [(80, 60)] * 7)  # system+first observation, then 7 more turns
    assert len(ep.token_ids) == 300 + 60 + 7 * 140
    per_turn = ep.per_turn_sample_tokens()
    assert per_turn == sum(360 + 140 * k for k in range(8))
    assert per_turn / len(ep.token_ids) > 4


@settings(max_examples=60, deadline=None)
@given(
    shapes=st.lists(
        st.lists(st.tuples(st.integers(0, 6), st.integers(1, 6)), min_size=1, max_size=3), min_size=1, max_size=12
    ),
    budget=st.integers(8, 40),
    dp=st.integers(1, 3),
)
def test_every_token_once_budget_kept_and_loss_terms_preserved(shapes, budget, dp):
    eps = [episode(s, seed=i, advantage=float(i % 3 - 1), position=i) for i, s in enumerate(shapes)]
    ranks, stats = pack_episodes(eps, budget=budget, dp=dp)
    assert len({len(r) for r in ranks}) == 1
    got = []
    for rank in ranks:
        for mb in rank:
            assert mb.num_tokens <= budget
            got += [t for t in mb.tokens.tolist() if t != 0]  # ids are >= 1; 0 is the padding micro-batch
    kept = [e.token_ids[: min(budget, len(e.token_ids))] for e in eps]
    assert sorted(got) == sorted(t for k in kept for t in k)
    # the policy-gradient terms sum(adv * logp) over trained tokens are exactly the episodes' own
    packed = sum(float((mb.token_advantages() * mb.rollout_logprobs * mb.loss_mask).sum()) for r in ranks for mb in r)
    direct = sum(
        e.advantage * sum(lp for lp, g in zip(e.rollout_logprobs[1:n], e.generated[1:n], strict=True) if g)
        for e, n in ((e, min(budget, len(e.token_ids))) for e in eps)
    )
    assert packed == pytest.approx(direct, abs=1e-4)
    assert stats.truncated == [i for i, e in enumerate(eps) if len(e.token_ids) > budget]


def test_over_long_episodes_are_counted_not_fatal():
    eps = [episode([(5, 5)], seed=0), episode([(30, 30)], seed=1), episode([(2, 2)], seed=2)]
    _, stats = pack_episodes(eps, budget=20, overlong="drop")
    assert stats.dropped == [1] and stats.episodes == 2
    _, stats = pack_episodes(eps, budget=20, overlong="truncate")
    assert stats.truncated == [1] and eps[1].truncated


def test_an_episode_the_length_budget_left_empty_packs_with_no_loss_token():
    """A prompt over the rollout's budget gets an empty answer (no generated token): its segment is kept (the tokens
    are real) but adds nothing to the loss or to the step's denominators (the all-masked loss is 0: test_losses)."""
    empty, full = episode([(5, 0), (3, 0)], seed=0), episode([(2, 3)], seed=1)
    [[mb]], stats = pack_episodes([empty, full], budget=64)
    assert mb.num_segments == 2 and stats.loss_tokens == 3 and mb.loss_mask[:8].sum() == 0
    denom = step_denominators([mb])
    assert (denom.num_tokens, denom.num_sequences) == (3, 1)
    [[alone]], _ = pack_episodes([empty], budget=64)
    assert step_denominators([alone]).num_tokens == 0 and alone.loss_mask.sum() == 0


def test_episode_without_advantage_or_with_ragged_fields_is_rejected():
    with pytest.raises(ValueError, match="no advantage"):
        pack_episodes([episode([(2, 2)], advantage=None)], budget=16)
    with pytest.raises(ValueError, match="generated"):
        Episode(
            pack_id=0,
            rollout=0,
            kind="solve",
            position=0,
            token_ids=[1, 2],
            generated=[True],
            rollout_logprobs=[0.0, 0.0],
            turn_ids=[0, 0],
        )


def with_values(ep: Episode, seed: int) -> Episode:
    """``ep`` with per-turn advantage terms (one value per turn on its generated tokens) and teacher log-probs."""
    rng = random.Random(seed)
    per_turn = [rng.uniform(-1, 1) for _ in range(ep.turn_ids[-1] + 1)]
    ep.token_advantage_terms = [per_turn[t] if g else 0.0 for t, g in zip(ep.turn_ids, ep.generated, strict=True)]
    ep.teacher_logprobs = [-rng.random() if g else 0.0 for g in ep.generated]
    return ep


def test_per_token_values_ride_with_their_tokens_shifted_like_the_logprobs():
    ep = with_values(episode([(3, 2), (2, 2)], seed=1, advantage=0.5), seed=2)
    [[mb]], _ = pack_episodes([ep], budget=64)
    trained = [3, 4, 7, 8]  # generated tokens; positions 2, 3, 6, 7 predict them
    assert mb.loss_mask.nonzero().squeeze(1).tolist() == [p - 1 for p in trained]
    for name in ("token_advantage_terms", "teacher_logprobs"):
        got = getattr(mb, name)
        assert torch.allclose(got[mb.loss_mask > 0], torch.tensor([getattr(ep, name)[i] for i in trained]))
        assert (got[mb.loss_mask == 0] == 0).all()
    turn = ep.token_advantage_terms
    assert torch.allclose(mb.token_advantages()[mb.loss_mask > 0], 0.5 + torch.tensor([turn[i] for i in trained]))


@settings(max_examples=30, deadline=None)
@given(
    shapes=st.lists(
        st.lists(st.tuples(st.integers(0, 6), st.integers(1, 6)), min_size=1, max_size=3), min_size=1, max_size=10
    ),
    budget=st.integers(8, 40),
    dp=st.integers(1, 3),
)
def test_per_token_values_survive_dp_balance_and_truncation(shapes, budget, dp):
    """Whatever the planner does (DP balance, micro-batches, truncation), each trained token keeps its own values:
    sum(teacher * A) over the step equals the episodes' own sum."""
    eps = [
        with_values(episode(s, seed=i, advantage=float(i % 3 - 1), position=i), seed=50 + i)
        for i, s in enumerate(shapes)
    ]
    ranks, _ = pack_episodes(eps, budget=budget, dp=dp)
    packed = sum(  # a padding micro-batch (a rank with fewer episodes than slots) has no loss token and no values
        float((mb.token_advantages() * mb.teacher_logprobs * mb.loss_mask).sum())
        for r in ranks
        for mb in r
        if mb.teacher_logprobs is not None
    )
    direct = sum(
        sum(
            (e.advantage + e.token_advantage_terms[p]) * e.teacher_logprobs[p]
            for p in range(1, min(budget, len(e.token_ids)))
            if e.generated[p]
        )
        for e in eps
    )
    assert packed == pytest.approx(direct, abs=1e-4)


def test_per_token_values_on_some_episodes_only_or_ragged_are_rejected():
    a, b = with_values(episode([(2, 2)], seed=0), seed=1), episode([(2, 3)], seed=2)
    with pytest.raises(ValueError, match="teacher_logprobs|token_advantage_terms"):
        pack_episodes([a, b], budget=16)  # b's missing teacher log-probs would be packed as log-prob 0
    with pytest.raises(ValueError, match="teacher_logprobs"):
        Episode(
            pack_id=0,
            rollout=0,
            kind="solve",
            position=0,
            token_ids=[1, 2],
            generated=[False, True],
            rollout_logprobs=[0.0, -0.5],
            turn_ids=[0, 0],
            teacher_logprobs=[-0.5],
        )
