"""A toy ``Episode`` for the hand-computed credit cases: 2 prompt tokens and ``gen`` generated ones."""

from dataclasses import replace

from cod_megatron.cod.episode import Episode


def toy_episode(
    kind: str, j: int, reward: float, *, pack_id: int = 0, rollout: int = 0, gen: int = 3, **fields
) -> Episode:
    """Episode ``kind`` at position ``j`` with ``reward``; ``fields`` (``branch``, ``judge_error``) pass through."""
    ep = Episode.from_turns([([1, 1], [1] * gen, [0.0] * gen)], pack_id=pack_id, rollout=rollout, kind=kind, position=j)
    ep.reward = reward
    return replace(ep, **fields)
