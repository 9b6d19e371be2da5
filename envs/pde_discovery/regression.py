"""SINDy-style sparse regression of PDE Discovery (cod.md 9.7): ridge screening, candidate supports, scoring.

Candidates are refitted by least squares, thresholded, rounded to three decimals and printed with three significant
digits; each *printed* equation is scored by its maximum absolute error on the dataset, and the lowest error wins.
Work is bounded: at most 15 dictionary terms and 3 terms per support (576 supports), at most 8 candidate equations.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from cod_envs.pde_discovery.terms import TERMS, columns, format_coefficient, format_equation

SCREEN_PASSES = 8
REFIT_RIDGE = 1e-8
KAPPA_CAP = 1e12
KAPPA_THRESHOLD = 100.0
MAX_SUPPORT_TERMS = 3


@dataclass(frozen=True)
class Candidate:
    """A scored equation: printed coefficients (term -> value), its text and its max error on the dataset."""

    coefs: dict[str, float]
    equation: str
    max_error: float

    @property
    def support(self) -> frozenset[str]:
        """The terms with nonzero coefficients."""
        return frozenset(self.coefs)

    def matches(self, coefs: dict[str, float]) -> bool:
        """Same support and every coefficient equal within relative tolerance 1e-9 (the acceptance rule)."""
        return set(coefs) == set(self.coefs) and all(
            math.isclose(coefs[t], c, rel_tol=1e-9, abs_tol=1e-12) for t, c in self.coefs.items()
        )


@dataclass(frozen=True)
class Regression:
    """The outcome of one regression call (candidates sorted by error, best first)."""

    candidates: list[Candidate]
    kappa_selected: float
    kappa_full: float
    rows: list[tuple[float, ...]] = field(default_factory=list)

    @property
    def best(self) -> Candidate:
        """The lowest-error candidate."""
        return self.candidates[0]

    def closest_other(self, chosen: Candidate) -> Candidate | None:
        """The lowest-error candidate whose support differs from ``chosen``'s."""
        return next((c for c in self.candidates if c.support != chosen.support), None)

    def margin(self, chosen: Candidate) -> float | None:
        """(second error - chosen error) / chosen error, None without a different-support candidate."""
        other = self.closest_other(chosen)
        if other is None:
            return None
        return (other.max_error - chosen.max_error) / max(chosen.max_error, 1e-300)

    @property
    def condition_penalty(self) -> float:
        """max(0, log10 kappa - log10 kappa_threshold) for the selected support."""
        return max(0.0, math.log10(self.kappa_selected) - math.log10(KAPPA_THRESHOLD))


def condition_number(theta: np.ndarray) -> float:
    """kappa of the unit-norm columns, capped at 1e12 (zero columns or rank loss count as the cap)."""
    if theta.size == 0:
        return 1.0
    norms = np.linalg.norm(theta, axis=0)
    if np.any(norms == 0):
        return KAPPA_CAP
    with np.errstate(all="ignore"):
        kappa = float(np.linalg.cond(theta / norms))
    return KAPPA_CAP if not math.isfinite(kappa) else min(kappa, KAPPA_CAP)


def _solve(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``matrix^-1 rhs``; a singular system (``<alpha>0</alpha>`` on fewer points than terms) gets the minimum-norm
    least-squares solution instead of numpy's LinAlgError, so a legal argument never crashes the step."""
    try:
        return np.linalg.solve(matrix, rhs)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(matrix, rhs, rcond=None)[0]


def screen(theta: np.ndarray, y: np.ndarray, alpha: float, threshold: float) -> list[int]:
    """Ridge on unit-norm columns, repeatedly dropping terms whose (rescaled) coefficient is below the threshold."""
    norms = np.linalg.norm(theta, axis=0)
    active = [k for k in range(theta.shape[1]) if norms[k] > 0]
    for _ in range(SCREEN_PASSES):
        if not active:
            break
        a = theta[:, active] / norms[active]
        w = _solve(a.T @ a + alpha * np.eye(len(active)), a.T @ y)
        coef = w / norms[active]
        keep = [k for k, c in zip(active, coef, strict=True) if abs(c) >= threshold]
        if keep == active:
            break
        active = keep
    return active


def _least_squares(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _solve(a.T @ a + REFIT_RIDGE * np.eye(a.shape[1]), a.T @ y)


def fit_support(
    theta: np.ndarray, y: np.ndarray, idx: list[int], terms: list[str], threshold: float
) -> dict[str, float]:
    """Refit on ``idx``, drop terms below the threshold and refit, round (3 decimals) and print (3 significant)."""
    if not idx:
        return {}
    coef = _least_squares(theta[:, idx], y)
    kept = [k for k, c in zip(idx, coef, strict=True) if abs(c) >= threshold]
    if kept != idx:
        if not kept:
            return {}
        idx, coef = kept, _least_squares(theta[:, kept], y)
    out: dict[str, float] = {}
    for k, c in zip(idx, coef, strict=True):
        printed = float(format_coefficient(round(float(c), 3)))
        if printed != 0.0:
            out[terms[k]] = printed
    return out


def max_error(theta: np.ndarray, y: np.ndarray, coefs: dict[str, float], terms: list[str]) -> float:
    """max |y - Theta c| over the dataset."""
    c = np.array([coefs.get(t, 0.0) for t in terms])
    return float(np.abs(y - theta @ c).max())


def run(
    points: np.ndarray,
    *,
    dictionary: list[str] | None,
    supports: list[frozenset[str]] | None,
    alpha: float,
    threshold: float,
    max_terms: int,
) -> Regression:
    """Score the dictionary mode's supports (screened one + all 1..max_terms subsets) and/or the given supports;
    ``points`` rows are (x, t, u, y)."""
    u, y = points[:, 2], points[:, 3]
    theta = columns(u, TERMS)
    terms = list(TERMS)
    index = {t: k for k, t in enumerate(terms)}
    wanted: list[tuple[int, ...]] = []
    if dictionary:
        dict_idx = sorted({index[t] for t in dictionary})
        screened = screen(theta[:, dict_idx], y, alpha, threshold)
        wanted.append(tuple(dict_idx[k] for k in screened))
        for size in range(1, min(max_terms, MAX_SUPPORT_TERMS, len(dict_idx)) + 1):
            wanted.extend(itertools.combinations(dict_idx, size))
    for support in supports or []:
        wanted.append(tuple(sorted(index[t] for t in support)))
    seen: dict[str, Candidate] = {}
    for idx in dict.fromkeys(wanted):
        coefs = fit_support(theta, y, list(idx), terms, threshold)
        if not coefs:
            continue
        eq = format_equation(coefs)
        if eq not in seen:
            seen[eq] = Candidate(coefs, eq, max_error(theta, y, coefs, terms))
    candidates = sorted(seen.values(), key=lambda c: (c.max_error, len(c.coefs), c.equation))
    if not candidates:
        return Regression([], KAPPA_CAP, condition_number(theta))
    best = candidates[0]
    sel = [index[t] for t in TERMS if t in best.coefs]
    pred = theta[:, sel] @ np.array([best.coefs[terms[k]] for k in sel])
    rows = [(*map(float, pt), float(p), float(abs(pt[3] - p))) for pt, p in zip(points, pred, strict=True)]
    return Regression(candidates, condition_number(theta[:, sel]), condition_number(theta), rows)
