"""The CoD data model: tasks, packs, episodes and lifecycles.

Words: *pack forming* groups S tasks into a pack (shared hidden structure through the pack seed); *sequence
packing* (``cod_megatron/data``) puts episodes' tokens into micro-batches. An episode is stored token-in/token-out:
the ids the engine saw and produced, never re-tokenised text, so training log-probs line up with rollout
log-probs token for token. A multi-turn solve episode is one token sequence whose ``generated`` mask covers every
model turn and excludes prompts and environment observations.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

EpisodeKind = Literal["solve", "update"]
TOKEN_VALUE_FIELDS = ("token_advantage_terms", "teacher_logprobs")
"""The optional per-token float values an episode may carry beside its tokens (packed with them, see data/)."""


@dataclass(frozen=True, kw_only=True)
class Task:
    """One dataset row of one taskset; knows nothing about packs."""

    taskset_id: str
    row: int
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Pack:
    """S related tasks solved in sequence; the G rollouts of a pack share ``pack_id`` and ``seed``."""

    pack_id: int
    seed: int
    tasks: tuple[Task, ...]

    @property
    def size(self) -> int:
        """S."""
        return len(self.tasks)


@dataclass(kw_only=True)
class Episode:
    """One solve or update episode of one lifecycle, as the engine saw it (all per-token lists of equal length)."""

    pack_id: int
    rollout: int
    """Index i of the lifecycle among the G rollouts of its pack."""
    kind: EpisodeKind
    position: int
    """Task index j: solve episode of task j, or the update episode written after task j."""
    token_ids: list[int]
    generated: list[bool]
    """True for tokens the policy produced (the only ones trained on)."""
    rollout_logprobs: list[float]
    """Engine log-prob of each generated token (0.0 elsewhere)."""
    turn_ids: list[int]
    """Turn (model call) index of each token, for the sequence-mean loss modes."""
    reward: float = 0.0
    feedback: str = ""
    truncated: bool = False
    """Cut at a length limit (the engine stopped, or sequence packing truncated it)."""
    format_error: bool = False
    """The model's output was malformed (it got the spec's defined reward and feedback)."""
    judge_error: bool = False
    """A judge model's output was malformed (Learn2Ask): the whole lifecycle is dropped."""
    outcome: float | None = None
    """Solve episodes: the environment's raw outcome before the step penalty (``reward`` is r_x, after it)."""
    penalty: float = 0.0
    """Solve episodes: the length/step penalty taken off a positive outcome (cod.md 3.1; logged apart, R4)."""
    advantage: float | None = None
    """Set by credit assignment."""
    branch: int | None = None
    """Update episodes at a branch point (``algorithm.update_branches`` B > 1): the index b of this branch in 0..B-1."""
    token_advantage_terms: list[float] | None = None
    """Optional per-token term added to ``advantage`` on each generated token (e.g. per-turn credit inside the
    episode); None: the episode's one advantage on every token."""
    teacher_logprobs: list[float] | None = None
    """Optional teacher log-prob of each generated token (0.0 elsewhere), for an advantage formed in the forward
    from the current log-probs (``algorithm.teacher_coef``; on-policy distillation, cod.md 8)."""

    def __post_init__(self) -> None:
        n = len(self.token_ids)
        for name in ("generated", "rollout_logprobs", "turn_ids", *TOKEN_VALUE_FIELDS):
            if getattr(self, name) is not None and len(getattr(self, name)) != n:
                raise ValueError(
                    f"episode {self.kind}@{self.position}: {name} has {len(getattr(self, name))} entries for {n} tokens"
                )
        if n == 0:
            raise ValueError(f"episode {self.kind}@{self.position}: no tokens")
        if self.kind not in ("solve", "update"):
            raise ValueError(f"episode kind must be 'solve' or 'update', got {self.kind!r}")

    @classmethod
    def from_turns(
        cls,
        turns: Sequence[tuple[Sequence[int], Sequence[int], Sequence[float]]],
        *,
        pack_id: int,
        rollout: int,
        kind: EpisodeKind,
        position: int,
    ) -> Episode:
        """An episode from its model calls in order, each ``(prompt or observation ids, response ids, response
        log-probs)``: the per-token lists (the generated mask, turn ids, log-probs 0.0 outside responses) are laid
        out here once, for episodes made without a conversation (synthetic batches, tests)."""
        ids: list[int] = []
        generated: list[bool] = []
        logprobs: list[float] = []
        turn_ids: list[int] = []
        for t, (observation, response, response_logprobs) in enumerate(turns):
            ids += [*observation, *response]
            generated += [False] * len(observation) + [True] * len(response)
            logprobs += [0.0] * len(observation) + list(response_logprobs)
            turn_ids += [t] * (len(observation) + len(response))
        return cls(
            pack_id=pack_id,
            rollout=rollout,
            kind=kind,
            position=position,
            token_ids=ids,
            generated=generated,
            rollout_logprobs=logprobs,
            turn_ids=turn_ids,
        )

    @property
    def num_generated(self) -> int:
        """Tokens the loss sees."""
        return sum(self.generated)

    def per_turn_sample_tokens(self) -> int:
        """Tokens the same episode costs as one sample per model call (the reference's layout, cod.md 2.8).

        Each call's sample is the whole conversation so far plus that call's response, so the prefix is encoded
        again for every turn. Compare with ``len(token_ids)``: one segment holding every turn.
        """
        n, total = len(self.token_ids), 0
        for p, (t, g) in enumerate(zip(self.turn_ids, self.generated, strict=True)):
            if g and (p + 1 == n or not self.generated[p + 1] or self.turn_ids[p + 1] != t):
                total += p + 1  # one sample ends after this turn's last generated token
        return total


def has_judge_error(episodes: Iterable[Any]) -> bool:
    """A judge-format error in any episode drops the whole lifecycle from training and from means (cod.md 3.4)."""
    return any(e.judge_error for e in episodes)


@dataclass(kw_only=True)
class Branch:
    """A non-continuing branch at update position j: its update episode, then the tasks it played from that hint.

    Only the first episode (the branch's update episode, trained against the branch mean) enters the loss; the
    branch's solve episodes (and, with ``branch_horizon`` >= 2, its later update episodes) only measure the hint.
    """

    position: int
    index: int
    episodes: list[Episode]

    @property
    def update(self) -> Episode:
        """The branch's update episode (written after task ``position`` from the lifecycle's own prompt)."""
        return self.episodes[0]

    def solve_rewards(self) -> list[float]:
        """r_x of the tasks the branch played, in position order."""
        return [e.reward for e in sorted(self.episodes, key=lambda e: e.position) if e.kind == "solve"]


@dataclass(kw_only=True)
class Lifecycle:
    """Rollout ``rollout`` of ``pack``: S solve episodes and S - 1 update episodes, in order.

    With update branches, ``branches`` holds the B - 1 non-continuing branches of every update position.
    """

    pack: Pack
    rollout: int
    episodes: list[Episode] = field(default_factory=list)
    branches: list[Branch] = field(default_factory=list)

    def solve_rewards(self) -> list[float]:
        """r_x[i, 0..S-1] in position order."""
        return [e.reward for e in sorted(self.solves(), key=lambda e: e.position)]

    def update_rewards(self) -> list[float]:
        """r_z[i, 0..S-2] in position order."""
        return [e.reward for e in sorted(self.updates(), key=lambda e: e.position)]

    def solves(self) -> list[Episode]:
        """The solve episodes."""
        return [e for e in self.episodes if e.kind == "solve"]

    def updates(self) -> list[Episode]:
        """The update episodes."""
        return [e for e in self.episodes if e.kind == "update"]

    def all_episodes(self) -> list[Episode]:
        """Every episode generated for this lifecycle: its own, then those of its update branches."""
        return [*self.episodes, *(e for br in self.branches for e in br.episodes)]

    def branch_point(self, j: int, horizon: int) -> tuple[list[Episode], list[float], list[list[float]]]:
        """The B update episodes at position ``j`` in branch order, their r_z, and the solve rewards of the
        ``horizon`` tasks each one played (the continuing branch's are the lifecycle's own tasks j+1..j+horizon)."""
        main = [e for e in self.updates() if e.position == j]
        if len(main) != 1 or main[0].branch is None:
            raise ValueError(f"lifecycle {self.rollout} of pack {self.pack.pack_id}: no branch point at update {j}")
        ups = {main[0].branch: (main[0], self.solve_rewards()[j + 1 : j + 1 + horizon])}
        for br in self.branches:
            if br.position == j:
                ups[br.index] = (br.update, br.solve_rewards())
        if sorted(ups) != list(range(len(ups))) or any(len(r) != horizon for _, r in ups.values()):
            raise ValueError(
                f"lifecycle {self.rollout} of pack {self.pack.pack_id}: update {j} has branches {sorted(ups)} with "
                f"{[len(r) for _, r in ups.values()]} tasks each, want 0..B-1 with {horizon}"
            )
        order = [ups[b] for b in range(len(ups))]
        return [e for e, _ in order], [e.reward for e, _ in order], [r for _, r in order]

    @property
    def has_judge_error(self) -> bool:
        """See :func:`has_judge_error` (a judge error inside a branch drops the lifecycle too: its branch baseline
        would be wrong)."""
        return has_judge_error(self.all_episodes())
