"""RolloutManager: the G rollouts of every pack of a step, run concurrently on the engines through the runner.

Each lifecycle is a thread that drives :func:`~cod_megatron.rollout.token_play.run_token_lifecycle`; the threads
of one engine share a :class:`~cod_megatron.rollout.batcher.LockstepBatcher`, so a step costs about
(episodes per lifecycle) engine calls per engine instead of one call per episode. A lifecycle is seeded from
(run seed, step, pack seed, rollout): a resumed run samples the same. A lifecycle whose generation fails is retried
from its start (its partial episodes are dropped), the finished ones are kept; when the engine itself is unhealthy
it is restarted and ``on_restart`` re-syncs its weights before the retry. :class:`TrainingRollouts` is the loop's
entry: ``generate(step)`` plays step ``step``'s training packs.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cod_envs.base import Environment
from cod_megatron.cod.episode import Lifecycle, Pack
from cod_megatron.cod.rewards import RewardRule
from cod_megatron.cod.tokenization import LengthBudget
from cod_megatron.engines.interface import RolloutEngine, SamplingParams, ServingEngine
from cod_megatron.rollout.batcher import LockstepBatcher
from cod_megatron.rollout.lifecycle import TextLifecycle
from cod_megatron.rollout.pack_source import PackSource
from cod_megatron.rollout.token_play import Renderer, run_token_lifecycle

log = logging.getLogger(__name__)


def lifecycle_seed(run_seed: int, step: int, pack_seed: int, rollout: int) -> int:
    """The sampling seed of one lifecycle (process-independent)."""
    digest = hashlib.sha256(f"cod-lifecycle/{run_seed}/{step}/{pack_seed}/{rollout}".encode()).digest()
    return int.from_bytes(digest[:6], "big")


@dataclass(frozen=True)
class DomainPlay:
    """How the packs of one domain are played: its environment class and reward rule (None: the domain's
    registered defaults). A manager holds one per domain of the run, keyed by the packs' taskset id."""

    env_cls: type[Environment]
    rewards: RewardRule | None = None


@dataclass
class RolloutResult:
    """Every lifecycle of one step (pack order, then rollout order) and what it cost."""

    lifecycles: list[Lifecycle]
    traces: list[TextLifecycle]
    seconds: float
    engine_calls: int
    retries: int
    restarts: int
    failed: int
    """Lifecycles given up after all retries (left out of the batch)."""
    info: dict[str, Any] = field(default_factory=dict)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    """Of ``prompt_tokens``, served from the engines' prefix caches (a pack stays on one engine: ``k mod engines``)."""


@dataclass(frozen=True)
class _RunSettings:
    """How every lifecycle of one ``RolloutManager.run`` call is played (the same for all its threads)."""

    step: int
    temperature: float
    hint_visible: bool
    env_task_idx: list[list[int]] | None
    update_branches: int
    branch_horizon: int


class RolloutManager:
    """Runs lifecycles of the run's domains on a list of engines."""

    def __init__(
        self,
        engines: Sequence[ServingEngine],
        plays: Mapping[str, DomainPlay],
        renderer: Renderer,
        *,
        max_new_tokens: int,
        temperature: float,
        run_seed: int,
        retries: int = 2,
        on_restart: Callable[[ServingEngine], None] | None = None,
        length_limit: int | None = None,
        budget: LengthBudget | None = None,
    ):
        """``plays``: taskset id -> how its packs are played; ``length_limit``: the response length the prompts ask
        for (``rollout.response_length_restraint``, cod.md 2.7); ``budget``: the length caps every call is held to
        (None: ``max_new_tokens`` and the domain's caps only). Every engine must declare what the
        manager calls (:class:`~cod_megatron.engines.interface.ServingEngine`: a restart included)."""
        for e in engines:
            if not isinstance(e, ServingEngine):
                raise TypeError(f"{type(e).__name__} is not a ServingEngine (generate_batch, health, restart)")
        self.engines, self.plays, self.renderer = list(engines), dict(plays), renderer
        self.max_new_tokens, self.temperature, self.run_seed = max_new_tokens, temperature, run_seed
        self.retries, self.on_restart = retries, on_restart
        self.length_limit, self.budget = length_limit, budget
        self._lock = threading.Lock()

    def run(
        self,
        packs: list[Pack],
        group_size: int,
        *,
        step: int,
        hint_visible: bool = True,
        temperature: float | None = None,
        env_task_idx: list[list[int]] | None = None,
        update_branches: int = 1,
        branch_horizon: int = 1,
        first_rollout: int = 0,
    ) -> RolloutResult:
        """``group_size`` lifecycles per pack; pack ``k`` goes to engine ``k % len(engines)``.

        ``env_task_idx[k]``: the task index each position of pack ``k`` tells its environment (Ralph packing).
        ``update_branches`` B > 1: B update episodes at every update position, the B - 1 others each playing the next
        ``branch_horizon`` tasks in threads of their own, in the same lock-step rounds (training only).
        ``first_rollout``: the rollout index (and so the sampling seed) of each pack's first lifecycle (an evaluation
        suite's rollout seeds).
        """
        t0 = time.perf_counter()
        jobs = [(k, pack, i) for k, pack in enumerate(packs) for i in range(first_rollout, first_rollout + group_size)]
        per_engine: dict[int, list] = {}
        for job in jobs:
            per_engine.setdefault(job[0] % len(self.engines), []).append(job)
        batchers = {e: LockstepBatcher(self.engines[e], len(js)) for e, js in per_engine.items()}
        results: dict[tuple[int, int], tuple[Lifecycle, TextLifecycle] | None] = {}
        counters = {"retries": 0, "restarts": 0}
        settings = _RunSettings(
            step=step,
            temperature=self.temperature if temperature is None else temperature,
            hint_visible=hint_visible,
            env_task_idx=env_task_idx,
            update_branches=update_branches,
            branch_horizon=branch_horizon,
        )

        def work(engine_idx: int, k: int, pack: Pack, rollout: int) -> None:
            batcher = batchers[engine_idx]
            try:
                client = batcher.client((k, rollout))
                results[(k, rollout)] = self._run_one(engine_idx, client, k, pack, rollout, settings, counters)
            finally:
                batcher.leave()

        threads = [
            threading.Thread(target=work, args=(e, *job), name=f"lifecycle-{job[0]}-{job[2]}", daemon=True)
            for e, js in per_engine.items()
            for job in js
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done = [results[(k, i)] for k, _, i in jobs]
        return RolloutResult(
            lifecycles=[r[0] for r in done if r is not None],
            traces=[r[1] for r in done if r is not None],
            seconds=time.perf_counter() - t0,
            engine_calls=sum(b.rounds for b in batchers.values()),
            retries=counters["retries"],
            restarts=counters["restarts"],
            failed=sum(r is None for r in done),
            prompt_tokens=sum(b.prompt_tokens for b in batchers.values()),
            cached_tokens=sum(b.cached_tokens for b in batchers.values()),
        )

    def play(self, pack: Pack) -> DomainPlay:
        """The play of ``pack``'s domain (a pack holds one domain's tasks); a KeyError names a domain not in the run."""
        taskset = pack.tasks[0].taskset_id
        if taskset not in self.plays:
            raise KeyError(f"pack {pack.pack_id} is of {taskset!r}; this manager plays {sorted(self.plays)}")
        return self.plays[taskset]

    def _run_one(
        self,
        engine_idx: int,
        client: RolloutEngine,
        k: int,
        pack: Pack,
        rollout: int,
        settings: _RunSettings,
        counters: dict[str, int],
    ) -> tuple[Lifecycle, TextLifecycle] | None:
        """One lifecycle on its engine's batcher client, retried from its start; None once the retries are spent."""
        params = SamplingParams(
            max_new_tokens=self.max_new_tokens,
            temperature=settings.temperature,
            seed=lifecycle_seed(self.run_seed, settings.step, pack.seed, rollout),
        )
        play = self.play(pack)
        for attempt in range(self.retries + 1):
            try:
                return run_token_lifecycle(
                    play.env_cls,
                    pack,
                    rollout,
                    engine=client,
                    renderer=self.renderer,
                    params=params,
                    budget=self.budget,
                    hint_visible=settings.hint_visible,
                    env_task_idx=settings.env_task_idx[k] if settings.env_task_idx else None,
                    length_limit=self.length_limit,
                    rewards=play.rewards,
                    update_branches=settings.update_branches,
                    branch_horizon=settings.branch_horizon,
                )
            except Exception as exc:
                with self._lock:
                    counters["retries"] += attempt < self.retries
                log.warning("lifecycle pack %d rollout %d failed (attempt %d): %r", k, rollout, attempt, exc)
                self._heal(engine_idx, counters)
        return None

    def _heal(self, engine_idx: int, counters: dict[str, int]) -> None:
        """Restart an engine that no longer answers (once per failure, whichever thread notices first)."""
        engine = self.engines[engine_idx]
        with self._lock:
            if engine.health().get("ok", False):
                return
            log.warning("engine %d is unhealthy; restarting it", engine_idx)
            engine.restart()
            counters["restarts"] += 1
            if self.on_restart is not None:
                self.on_restart(engine)


@dataclass(frozen=True)
class TrainingRollouts:
    """The training batches of a run: step ``s`` plays the source's packs for ``s``, ``group_size`` lifecycles each,
    with the algorithm's update branches (what the rollout schedules call, on demand or ahead of time)."""

    manager: RolloutManager
    source: PackSource
    group_size: int
    hint_visible: bool = True
    update_branches: int = 1
    branch_horizon: int = 1

    def generate(self, step: int) -> RolloutResult:
        """Every lifecycle of step ``step``'s training packs (seeded by the step: a resumed run samples the same)."""
        return self.manager.run(
            self.source.train_packs(step),
            self.group_size,
            step=step,
            hint_visible=self.hint_visible,
            update_branches=self.update_branches,
            branch_horizon=self.branch_horizon,
        )
