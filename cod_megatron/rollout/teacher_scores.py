"""Teacher log-probs of the student's tokens (on-policy distillation, cod.md 8; issue 35).

Every training sample (solve turns and update calls alike) of a domain is scored by that domain's teacher: one
prefill of the episode's whole token sequence, read at the tokens the student generated, so a multi-turn episode is
scored turn by turn on exactly the context the student saw. Requests go to a teacher in chunks (``chunk``: a student
engine's concurrency, what the memory planner budgets a teacher's KV cache for), every domain's teacher in turn. A
failed call is retried like a rollout engine's (:class:`~cod_megatron.rollout.manager.RolloutManager`): a teacher
that no longer answers its health probe is restarted first (it reloads its own weights); after ``retries`` the step
fails naming the domain. Evaluation samples are never scored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from cod_megatron.cod.episode import Episode
from cod_megatron.engines.interface import ScoreRequest, ScoringEngine

log = logging.getLogger(__name__)


def score_request(episode: Episode) -> ScoreRequest:
    """The episode as teacher forcing: everything before its first generated token is the prompt."""
    if True not in episode.generated:
        raise ValueError(f"episode {episode.kind}@{episode.position} has no generated token to score")
    first = episode.generated.index(True)
    if first == 0:
        raise ValueError(f"episode {episode.kind}@{episode.position} starts with a generated token (no prompt)")
    return ScoreRequest(prompt_ids=episode.token_ids[:first], token_ids=episode.token_ids[first:])


def per_token(episode: Episode, scores: Sequence[float]) -> list[float]:
    """The scores of ``token_ids[first generated:]`` laid out beside the episode's tokens: the teacher's log-prob at
    each generated token, 0.0 at every other (prompt and observation tokens are never trained on)."""
    first = episode.generated.index(True)
    values = [0.0] * first + list(scores)
    return [v if g else 0.0 for v, g in zip(values, episode.generated, strict=True)]


def teacher_logprobs(
    samples: Sequence[tuple[str, Episode]],
    teachers: Mapping[str, ScoringEngine],
    *,
    chunk: int,
    retries: int = 2,
) -> list[list[float]]:
    """Per ``(domain, episode)``, in order: the domain's teacher's log-prob of each generated token (0.0 elsewhere)."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    missing = sorted({d for d, _ in samples} - set(teachers))
    if missing:
        raise KeyError(f"no teacher for domain(s) {missing}")
    out: list[list[float] | None] = [None] * len(samples)
    for domain, engine in teachers.items():
        mine = [i for i, (d, _) in enumerate(samples) if d == domain]
        for start in range(0, len(mine), chunk):
            idx = mine[start : start + chunk]
            requests = [score_request(samples[i][1]) for i in idx]
            scores = _score(engine, requests, domain, retries)
            for i, s in zip(idx, scores, strict=True):
                if len(s) != len(samples[i][1].token_ids) - samples[i][1].generated.index(True):
                    raise RuntimeError(f"teacher of {domain} returned {len(s)} log-probs for a request")
                out[i] = per_token(samples[i][1], s)
    return out  # type: ignore[return-value]  # every index belongs to one domain, all of which have a teacher


def _score(engine: ScoringEngine, requests: list[ScoreRequest], domain: str, retries: int) -> list[list[float]]:
    for attempt in range(retries + 1):
        try:
            return engine.score_batch(requests)
        except Exception as exc:
            if attempt == retries:
                raise RuntimeError(f"teacher of {domain} failed {retries + 1} times: {exc!r}") from exc
            log.warning("teacher of %s failed (attempt %d): %r", domain, attempt, exc)
            health = getattr(engine, "health", None)
            if health is not None and not health().get("ok", False):
                log.warning("teacher of %s is unhealthy; restarting it", domain)
                engine.restart()  # type: ignore[attr-defined]
    raise AssertionError("unreachable")
