"""A toy ``Episode`` for the hand-computed credit cases: 2 prompt tokens and ``gen`` generated ones."""

from cod_megatron.cod.episode import Episode


def toy_episode(
    kind: str, j: int, reward: float, *, pack_id: int = 0, rollout: int = 0, gen: int = 3, **fields
) -> Episode:
    """Episode ``kind`` at position ``j`` with ``reward``; ``fields`` (``branch``, ``judge_error``) pass through."""
    return Episode(
        pack_id=pack_id,
        rollout=rollout,
        kind=kind,
        position=j,
        token_ids=[1] * (2 + gen),
        generated=[False, False] + [True] * gen,
        rollout_logprobs=[0.0] * (2 + gen),
        turn_ids=[0] * (2 + gen),
        reward=reward,
        **fields,
    )
