"""Pack forming: group a batch's task rows into packs (cod.md 2.1, 2.2, 10.5).

Rows are grouped by taskset (a pack never mixes tasksets) in their batch order and cut into consecutive chunks of
``pack_size``. Strategies:

* ``cod``: consecutive distinct tasks; a short last chunk is padded cyclically from its group when
  ``pad_to_full_pack`` (every reference config), dropped otherwise;
* ``ralph_sample``: the first task of each regular pack, repeated ``pack_size`` times, ``env_task_idx = 0`` for
  every attempt;
* ``ralph_full``: every task becomes its own pack of ``pack_size`` identical attempts, no dropping or padding,
  ``env_task_idx = i mod pack_size`` with ``i`` the task's index in its taskset group.

The pack seed must not depend on a process's string-hash salt (cod.md 2.2 requirement), so both seeds here come
from SHA-256: the reference's ``stable_pack_seed`` over the rows' identities, or one over (batch id, pack index).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal

from cod_megatron.cod.episode import Pack, Task

Strategy = Literal["cod", "ralph_sample", "ralph_full"]


@dataclass(frozen=True, kw_only=True)
class FormedPack:
    """A pack plus, per position, the task index the environment is told (``env_task_idx``)."""

    pack: Pack
    env_task_idx: tuple[int, ...]


def stable_pack_seed(tasks: tuple[Task, ...] | list[Task], salt: int | None = None) -> int:
    """The reference's ``compute_stable_pack_seed``: SHA-256 of the sorted ``[taskset_id, row]`` pairs as compact
    JSON, first 8 bytes big-endian (a 64-bit seed, not reduced). ``salt`` (an evaluation data seed) hashes
    ``[salt, pairs]`` instead: row indices repeat across data seeds, and domains draw their secret from the pack seed,
    so without it every data seed would evaluate the same secrets."""
    pairs = sorted([t.taskset_id, t.row] for t in tasks)
    payload = pairs if salt is None else [salt, pairs]
    digest = hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def batch_pack_seed(batch_id: int | str, index: int) -> int:
    """Seed from (batch id, pack index), stable across processes (replaces the reference's salted tuple hash)."""
    digest = hashlib.sha256(json.dumps([str(batch_id), index], separators=(",", ":")).encode()).digest()
    return int.from_bytes(digest[:4], "big")


def form_packs(
    rows: list[Task],
    *,
    pack_size: int,
    strategy: Strategy = "cod",
    pad_to_full_pack: bool = True,
    batch_id: int | str = 0,
    stable_seed: bool = False,
    first_pack_id: int = 0,
    stable_salt: int | None = None,
) -> list[FormedPack]:
    """Packs of ``pack_size`` from ``rows`` (one batch), in taskset order of first appearance; ``stable_salt`` goes
    to ``stable_pack_seed``."""
    if pack_size < 1:
        raise ValueError(f"pack_size must be >= 1, got {pack_size}")
    groups: dict[str, list[Task]] = {}
    for t in rows:
        groups.setdefault(t.taskset_id, []).append(t)
    formed: list[tuple[tuple[Task, ...], tuple[int, ...]]] = []
    for group in groups.values():
        if strategy == "ralph_full":
            formed += [((t,) * pack_size, (i % pack_size,) * pack_size) for i, t in enumerate(group)]
            continue
        for start in range(0, len(group), pack_size):
            chunk = group[start : start + pack_size]
            if len(chunk) < pack_size:
                if not pad_to_full_pack:
                    continue
                chunk = chunk + [group[k % len(group)] for k in range(pack_size - len(chunk))]
            if strategy == "cod":
                formed.append((tuple(chunk), tuple(range(pack_size))))
            elif strategy == "ralph_sample":
                formed.append(((chunk[0],) * pack_size, (0,) * pack_size))
            else:
                raise ValueError(f"unknown packing strategy {strategy!r}")
    out = []
    for k, (tasks, idx) in enumerate(formed):
        seed = stable_pack_seed(tasks, stable_salt) if stable_seed else batch_pack_seed(batch_id, k)
        out.append(FormedPack(pack=Pack(pack_id=first_pack_id + k, seed=seed, tasks=tasks), env_task_idx=idx))
    return out
