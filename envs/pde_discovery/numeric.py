"""Numerics of PDE Discovery (cod.md 9.7): the semi-implicit solver, the pack's hidden equation and initial conditions.

u_t = u_xx + f(u) on x in [0, 1], t in [0, 1], u(0, t) = u(1, t) = 0. Semi-implicit Euler: on interior points
(I - dt D2) u^{n+1} = clip(u^n + dt f(u^n), -L, L), then clipped again. The matrix is constant, so its inverse is
computed once per grid and every step is one matrix product (unconditionally stable for the diffusion part; the
explicit reaction is bounded by the clip). Grids are fixed (257 x 2001 dense, 65 x 401 coarse): bounded work.

Everything here is a pure function of its arguments; the few ``lru_cache`` caches hold such results (the grid
inverse, the per-family amplitude bound, the pack's hidden problem), never lifecycle state.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from cod_envs.pde_discovery.families import FAMILIES, Template
from cod_envs.pde_discovery.terms import TERMS, columns, evaluate, reaction

STATE_LIMIT = 3.0
"""L = ``pde_state_abs_limit``: states are clipped to [-L, L]; hidden equations must stay strictly inside."""
DENSE = (257, 2001)
COARSE = (65, 401)
COEF_RANGE = (0.5, 2.0)
MODE_COUNT_RANGE = (1, 2)
MAX_DRAWS = 128
NOISE_LEVEL = 0.002


@lru_cache(maxsize=4)
def _step_inverse(nx: int, nt: int) -> np.ndarray:
    """(I - dt D2)^{-1} on the interior points (homogeneous Dirichlet boundaries)."""
    h, dt = 1.0 / (nx - 1), 1.0 / (nt - 1)
    n = nx - 2
    r = dt / (h * h)
    mat = np.diag(np.full(n, 1 + 2 * r)) - r * (np.eye(n, k=1) + np.eye(n, k=-1))
    inv = np.linalg.inv(mat)
    inv.setflags(write=False)
    return inv


def solve(
    u0: np.ndarray, f: Callable[[np.ndarray], np.ndarray], grid: tuple[int, int] = DENSE, limit: float = STATE_LIMIT
) -> np.ndarray:
    """All time levels: ``u0`` of shape (nx,) or (nx, B) -> (nt, nx[, B]); ``f`` maps interior states to f(u)."""
    nx, nt = grid
    dt = 1.0 / (nt - 1)
    inv = _step_inverse(nx, nt)
    u0 = np.asarray(u0, dtype=float)
    out = np.zeros((nt,) + u0.shape)
    out[0] = u0
    out[0, 0] = out[0, -1] = 0.0
    u = out[0, 1:-1]
    for n in range(1, nt):
        rhs = np.clip(u + dt * f(u), -limit, limit)
        u = np.clip(inv @ rhs, -limit, limit)
        out[n, 1:-1] = u
    return out


def stays_inside(u0: np.ndarray, f: Callable[[np.ndarray], np.ndarray], grid: tuple[int, int] = COARSE) -> bool:
    """Whether every column of ``u0`` (nx, B) stays strictly inside (-L, L) for the whole run, the explicit
    reaction update included (project: a run that only stays inside because of the clip is not stable)."""
    nx, nt = grid
    dt = 1.0 / (nt - 1)
    inv = _step_inverse(nx, nt)
    u = np.asarray(u0, dtype=float)[1:-1]
    if np.abs(u).max(initial=0.0) >= STATE_LIMIT:
        return False
    for _ in range(1, nt):
        rhs = u + dt * f(u)
        if not np.all(np.abs(rhs) < STATE_LIMIT):  # also catches NaN
            return False
        u = inv @ rhs
    return True


def batched_reaction(coef_matrix: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """f for a batch: column b of the state uses coefficients ``coef_matrix[:, b]`` over the 15 terms."""
    used = [k for k in range(len(TERMS)) if np.any(coef_matrix[k])]
    terms = [TERMS[k] for k in used]
    sub = coef_matrix[used]

    def f(u: np.ndarray) -> np.ndarray:
        return np.einsum("nbk,kb->nb", columns(u, terms), sub)

    return f


def grid_x(nx: int) -> np.ndarray:
    """Grid points of [0, 1]."""
    return np.linspace(0.0, 1.0, nx)


def eligible(family: str, max_terms: int) -> list[int]:
    """Indices of the family's templates with 1..max_terms terms."""
    return [i for i, t in enumerate(FAMILIES[family]) if 1 <= len(t) <= max_terms]


def _corners(template: Template) -> list[np.ndarray]:
    out = []
    for mags in itertools.product(COEF_RANGE, repeat=len(template)):
        sign_choices = [(1, -1) if s == 0 else (s,) for _, s in template]
        for signs in itertools.product(*sign_choices):
            vec = np.zeros(len(TERMS))
            for (term, _), m, s in zip(template, mags, signs, strict=True):
                vec[TERMS.index(term)] = s * m
            out.append(vec)
    return out


@lru_cache(maxsize=16)
def amplitude_bound(family: str, max_terms: int) -> float:
    """A_max: the largest A (bisection on (0, L), resolution L/64) for which A sin(pi x) stays inside |u| < L on the
    coarse grid for every eligible template at every corner of the coefficient box."""
    mats = [c for i in eligible(family, max_terms) for c in _corners(FAMILIES[family][i])]
    f = batched_reaction(np.stack(mats, axis=1))
    shape = np.sin(np.pi * grid_x(COARSE[0]))[:, None]
    lo, hi = 0.0, STATE_LIMIT
    while hi - lo > STATE_LIMIT / 64:
        mid = (lo + hi) / 2
        if stays_inside(mid * np.repeat(shape, len(mats), axis=1), f):
            lo = mid
        else:
            hi = mid
    return lo


def initial_condition(env_seed: int, i: int, amplitude: float, x: np.ndarray) -> np.ndarray:
    """Trajectory i's u0 at points ``x``: A g(x)/max g, g = sin(pi x)(m(x) - min m), m a random 1-2 mode sine sum;
    the normalisations are taken on the dense grid so every grid sees the same function."""
    rng = np.random.default_rng(np.random.SeedSequence([env_seed, 2, i]))
    k = int(rng.integers(MODE_COUNT_RANGE[0], MODE_COUNT_RANGE[1] + 1))
    c = rng.standard_normal(k)

    def raw(z: np.ndarray) -> np.ndarray:
        return sum(c[j] * np.sin((j + 1) * np.pi * z) for j in range(k))

    dense = grid_x(DENSE[0])
    scale = float(np.abs(raw(dense)).max()) or 1.0
    m_min = float((raw(dense) / scale).min())

    def g(z: np.ndarray) -> np.ndarray:
        return np.sin(np.pi * z) * (raw(z) / scale - m_min)

    peak = float(g(dense).max()) or 1.0
    x = np.asarray(x, dtype=float)
    return np.where((x <= 0.0) | (x >= 1.0), 0.0, np.clip(amplitude * g(x) / peak, 0.0, None))


def amplitudes(env_seed: int, pack_size: int, a_max: float) -> list[float]:
    """Stratified amplitudes: A_i uniform in the i-th of S strata of [0, A_max], then shuffled."""
    rng = np.random.default_rng(np.random.SeedSequence([env_seed, 1]))
    width = a_max / pack_size
    values = [float(rng.uniform(i * width, (i + 1) * width)) for i in range(pack_size)]
    order = rng.permutation(pack_size)
    return [values[int(j)] for j in order]


@dataclass(frozen=True)
class HiddenProblem:
    """One pack's PDE: the reaction coefficients and the S initial-condition amplitudes."""

    env_seed: int
    family: str
    template_index: int
    coefs: tuple[tuple[str, float], ...]
    amplitudes: tuple[float, ...]
    stable: bool

    def coefficients(self) -> dict[str, float]:
        """Term -> coefficient."""
        return dict(self.coefs)

    def u0(self, i: int, x: np.ndarray) -> np.ndarray:
        """Initial condition of trajectory ``i`` at ``x``."""
        return initial_condition(self.env_seed, i, self.amplitudes[i], x)


@lru_cache(maxsize=256)
def hidden_problem(
    env_seed: int, family: str, max_terms: int, pack_size: int, template_index: int | None = None
) -> HiddenProblem:
    """Draw template and coefficients (stream [E, 0]) until a coarse run of every trajectory stays inside (-L, L)."""
    rng = np.random.default_rng(np.random.SeedSequence([env_seed, 0]))
    pool = eligible(family, max_terms)
    amps = amplitudes(env_seed, pack_size, amplitude_bound(family, max_terms))
    xc = grid_x(COARSE[0])
    u0 = np.stack([initial_condition(env_seed, i, a, xc) for i, a in enumerate(amps)], axis=1)
    coefs: dict[str, float] = {}
    index, stable = -1, False
    for _ in range(MAX_DRAWS):
        index = template_index if template_index is not None else pool[int(rng.integers(len(pool)))]
        coefs = {}
        for term, sign in FAMILIES[family][index]:
            s = sign if sign != 0 else (1 if rng.random() < 0.5 else -1)
            coefs[term] = s * round(float(rng.uniform(*COEF_RANGE)), 2)
        if stays_inside(u0, reaction(coefs)):
            stable = True
            break
    return HiddenProblem(env_seed, family, index, tuple(coefs.items()), tuple(amps), stable)


def residual_field(u: np.ndarray, coefs: dict[str, float]) -> np.ndarray:
    """y on the dense grid: (u^{n+1} - u^n)/dt - D2 u^{n+1} at interior points (= f(u^n) where nothing was clipped),
    f(u) on the last level, 0 on the boundaries."""
    nt, nx = u.shape
    dt, h = 1.0 / (nt - 1), 1.0 / (nx - 1)
    y = np.zeros_like(u)
    d2 = (u[1:, :-2] - 2 * u[1:, 1:-1] + u[1:, 2:]) / (h * h)
    y[:-1, 1:-1] = (u[1:, 1:-1] - u[:-1, 1:-1]) / dt - d2
    y[-1, 1:-1] = evaluate(coefs, u[-1, 1:-1])
    return y


class LazySolution:
    """One trajectory on the dense grid, stepped only as far as the samples need (same scheme as :func:`solve`), so
    sampling early times costs a few steps instead of 2000."""

    def __init__(self, u0: np.ndarray, coefs: dict[str, float], grid: tuple[int, int] = DENSE):
        self.nx, self.nt = grid
        self.dt, self.h = 1.0 / (self.nt - 1), 1.0 / (self.nx - 1)
        self.coefs = dict(coefs)
        self._f = reaction(self.coefs)
        self.u = np.zeros((self.nt, self.nx))
        self.u[0, 1:-1] = np.asarray(u0, dtype=float)[1:-1]
        self.filled = 1
        self._inv = _step_inverse(self.nx, self.nt)

    def _fill(self, n: int) -> None:
        """Compute levels up to ``n`` (inclusive)."""
        n = min(n, self.nt - 1)
        u = self.u[self.filled - 1, 1:-1]
        lim = STATE_LIMIT
        while self.filled <= n:
            rhs = u + self.dt * self._f(u)
            np.minimum(np.maximum(rhs, -lim, out=rhs), lim, out=rhs)
            u = self._inv @ rhs
            np.minimum(np.maximum(u, -lim, out=u), lim, out=u)
            self.u[self.filled, 1:-1] = u
            self.filled += 1

    def residual(self, n: int) -> np.ndarray:
        """y on time level ``n`` (see :func:`residual_field`)."""
        y = np.zeros(self.nx)
        if n >= self.nt - 1:
            self._fill(self.nt - 1)
            y[1:-1] = evaluate(self.coefs, self.u[-1, 1:-1])
            return y
        self._fill(n + 1)
        nxt = self.u[n + 1]
        y[1:-1] = (nxt[1:-1] - self.u[n, 1:-1]) / self.dt - (nxt[:-2] - 2 * nxt[1:-1] + nxt[2:]) / (self.h * self.h)
        return y

    def sample(self, x: float, t: float) -> tuple[float, float]:
        """(u, y) at (x, t), bilinear in both."""
        n = min(int(t * (self.nt - 1)), self.nt - 2)
        self._fill(n + 2)
        y = np.stack([self.residual(n), self.residual(n + 1)])
        return bilinear(self.u, x, t), _bilinear_rows(y, x, t * (self.nt - 1) - n)


def _bilinear_rows(rows: np.ndarray, x: float, at: float) -> float:
    """Two adjacent time levels ``rows`` (2, nx), interpolated at x and fraction ``at`` between them."""
    fx = x * (rows.shape[1] - 1)
    j = min(int(fx), rows.shape[1] - 2)
    ax = fx - j
    top = (1 - ax) * rows[0, j] + ax * rows[0, j + 1]
    bottom = (1 - ax) * rows[1, j] + ax * rows[1, j + 1]
    return float((1 - at) * top + at * bottom)


def bilinear(field: np.ndarray, x: float, t: float) -> float:
    """``field[n, j]`` on the unit square's grid, interpolated at (x, t)."""
    nt, nx = field.shape
    fx, ft = x * (nx - 1), t * (nt - 1)
    j, n = min(int(fx), nx - 2), min(int(ft), nt - 2)
    ax, at = fx - j, ft - n
    top = (1 - ax) * field[n, j] + ax * field[n, j + 1]
    bottom = (1 - ax) * field[n + 1, j] + ax * field[n + 1, j + 1]
    return float((1 - at) * top + at * bottom)
