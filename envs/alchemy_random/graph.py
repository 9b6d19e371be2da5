"""Alchemy-Random's hidden structure (docs/cod.md 9.2): the settings table, the per-pack tiered recipe graph and its
targets (drawn from ``random.Random(pack_seed)`` in the reference's order), and the solution path of a target.
"""

from __future__ import annotations

import random
import string
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache

Pair = tuple[str, str]
"""An unordered recipe key, stored sorted."""


@dataclass(frozen=True)
class Setting:
    """One column of cod.md 9.2's parameter table."""

    min_tiers: int
    max_tiers: int
    min_base: int
    max_base: int
    min_recipes: int
    max_recipes: int
    shrink_min: float
    shrink_max: float
    max_tier_gap: int
    cross_min: float
    cross_max: float
    noise_min: float
    noise_max: float
    noise_chain_depth: int
    max_rounds: int
    material_mode: str
    pack_size: int


SETTINGS: dict[str, Setting] = {
    "easy": Setting(3, 4, 3, 4, 1, 1, 0.4, 0.6, 1, 0.0, 0.1, 0.0, 0.0, 2, 8, "unlimited", 4),
    "hard": Setting(3, 4, 4, 6, 1, 2, 0.4, 0.8, 1, 0.0, 0.05, 0.0, 0.3, 2, 15, "limited", 8),
}
_MAX_RECIPE_ATTEMPTS = 50


@dataclass(frozen=True)
class Graph:
    """A pack's hidden structure: tier lists (generation order, distractors included), recipes, targets."""

    tiers: tuple[tuple[str, ...], ...]
    recipes: dict[Pair, str]
    noise: frozenset[str]
    targets: tuple[str, ...]

    def tier_of(self, element: str) -> int:
        """The tier an element was generated in."""
        return next(t for t, names in enumerate(self.tiers) if element in names)


def _name(rng: random.Random, existing: set[str]) -> str:
    """A fresh random 3-5 letter lowercase name (no real-world meaning)."""
    while True:
        name = "".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 5)))
        if name not in existing:
            existing.add(name)
            return name


def _recipe(
    rng: random.Random, tier: int, tiers: list[list[str]], gap: int, cross: float, used: set[Pair]
) -> Pair | None:
    """An unused unordered pair for a tier-``tier`` product: input 1 from tier - 1, input 2 from tier - 1 or (with
    the cross-tier probability) from [max(0, tier - gap), tier - 2]; None after 50 collisions."""
    for _ in range(_MAX_RECIPE_ATTEMPTS):
        a = rng.choice(tiers[tier - 1])
        if rng.random() < cross and tier >= 2 and max(0, tier - gap) <= tier - 2:
            b = rng.choice(tiers[rng.randint(max(0, tier - gap), tier - 2)])
        else:
            b = rng.choice(tiers[tier - 1])
        key = (a, b) if a <= b else (b, a)
        if key not in used:
            return key
    return None


@lru_cache(maxsize=4096)
def generate_graph(pack_seed: int, setting: str, pack_size: int) -> Graph:
    """The pack's recipe graph and target list from ``random.Random(pack_seed)`` (stable across processes).

    Draw order follows the reference: tiers, base count, shrink, cross-tier probability, distractor ratio, names,
    recipes, distractors, then tier-weighted targets (weight tier + 1, without replacement) shuffled.
    """
    cfg = SETTINGS[setting]
    rng = random.Random(pack_seed)
    n_tiers = rng.randint(cfg.min_tiers, cfg.max_tiers)
    n_base = rng.randint(cfg.min_base, cfg.max_base)
    shrink = rng.uniform(cfg.shrink_min, cfg.shrink_max)
    cross = rng.uniform(cfg.cross_min, cfg.cross_max)
    ratio = rng.uniform(cfg.noise_min, cfg.noise_max)
    sizes = [n_base]
    for _ in range(1, n_tiers):
        sizes.append(max(1, round(sizes[-1] * shrink)))
    names: set[str] = set()
    tiers = [[_name(rng, names) for _ in range(size)] for size in sizes]
    recipes: dict[Pair, str] = {}
    for t in range(1, n_tiers):
        for elem in tiers[t]:
            for _ in range(rng.randint(cfg.min_recipes, cfg.max_recipes)):
                key = _recipe(rng, t, tiers, cfg.max_tier_gap, cross, set(recipes))
                if key is not None:
                    recipes[key] = elem
    noise: set[str] = set()
    if ratio > 0:
        for depth in range(cfg.noise_chain_depth):
            new: dict[int, list[str]] = defaultdict(list)
            for t in range(1, n_tiers):
                count = max(0, round(sizes[t] * ratio))
                if depth > 0:
                    count = max(0, round(count * 0.5))
                for _ in range(count):
                    elem = _name(rng, names)
                    key = _recipe(rng, t, tiers, cfg.max_tier_gap, cross, set(recipes))
                    if key is not None:
                        recipes[key] = elem
                        new[t].append(elem)
                        noise.add(elem)
            for t, extra in new.items():
                tiers[t].extend(extra)
    available = {t: [e for e in tiers[t] if e not in noise] for t in range(1, n_tiers)}
    targets: list[str] = []
    for _ in range(pack_size):
        active = [t for t in available if available[t]]
        if not active:
            break
        tier = rng.choices(active, weights=[t + 1 for t in active], k=1)[0]
        elem = rng.choice(available[tier])
        available[tier].remove(elem)
        targets.append(elem)
    rng.shuffle(targets)
    return Graph(tuple(tuple(t) for t in tiers), recipes, frozenset(noise), tuple(targets))


def solution_path(target: str, recipes: dict[Pair, str]) -> list[tuple[str, str, str]]:
    """Post-order (input 1, input 2, product) steps that follow the first recipe of each element."""
    first: dict[str, Pair] = {}
    for key, product in recipes.items():
        first.setdefault(product, key)
    path: list[tuple[str, str, str]] = []
    seen: set[str] = set()

    def expand(elem: str) -> None:
        if elem in seen or elem not in first:
            return
        seen.add(elem)
        a, b = first[elem]
        expand(a)
        expand(b)
        path.append((a, b, elem))

    expand(target)
    return path


def base_copies_needed(path: list[tuple[str, str, str]], base: set[str]) -> int:
    """m of cod.md 9.2: the most copies of one base element the path consumes (made intermediates are reused)."""
    need: dict[str, int] = defaultdict(int)
    made: dict[str, int] = defaultdict(int)
    for a, b, product in path:
        for elem in (a, b):
            if made[elem] > 0:
                made[elem] -= 1
            elif elem in base:
                need[elem] += 1
        made[product] += 1
    return max(need.values(), default=1)
