"""The episode data model: per-token lists laid out from model calls."""

from cod_megatron.cod.episode import Episode


def test_an_episode_from_turns_masks_responses_and_numbers_turns():
    ep = Episode.from_turns(
        [([7, 8], [9], [-0.5]), ([6], [5, 4], [-0.1, -0.2])], pack_id=1, rollout=2, kind="solve", position=3
    )
    assert ep.token_ids == [7, 8, 9, 6, 5, 4]
    assert ep.generated == [False, False, True, False, True, True]
    assert ep.turn_ids == [0, 0, 0, 1, 1, 1]  # an observation belongs to the turn whose response follows it
    assert ep.rollout_logprobs == [0.0, 0.0, -0.5, 0.0, -0.1, -0.2]
    assert (ep.pack_id, ep.rollout, ep.kind, ep.position, ep.num_generated) == (1, 2, "solve", 3, 3)
