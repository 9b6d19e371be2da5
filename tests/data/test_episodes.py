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
