"""The 15-term reaction dictionary of PDE Discovery (cod.md 9.7) and the equation text it is spoken in.

Equations are parsed by a small hand-written scanner over the fixed term spellings, never evaluated: a term is
looked up by its exact text and its column computed by numpy code below. The text is capped before scanning and the
number of summands is capped, so a hostile equation costs bounded work.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

import numpy as np

TERMS: tuple[str, ...] = (
    "u",
    "u**2",
    "u**3",
    "u**4",
    "u**5",
    "u**7",
    "sin(u)",
    "sin(2*u)",
    "exp(u)-1",
    "log(1+u**2)",
    "tanh(u)",
    "u/(1+u**2)",
    "u**2/(1+u**2)",
    "u**4/(1+u**4)",
    "u/(1+u+u**2)",
)
"""The dictionary, spelled exactly as in actions (cod.md 9.7)."""
TERM_INDEX: dict[str, int] = {t: i for i, t in enumerate(TERMS)}
MAX_EQUATION_CHARS = 2_000
MAX_SUMMANDS = 32

Coefficients = dict[str, float]
"""Term -> nonzero coefficient (the support is its key set)."""


TERM_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "u": lambda u: u,
    "u**2": lambda u: u * u,
    "u**3": lambda u: u * u * u,
    "u**4": lambda u: (u * u) ** 2,
    "u**5": lambda u: (u * u) ** 2 * u,
    "u**7": lambda u: (u * u) ** 3 * u,
    "sin(u)": np.sin,
    "sin(2*u)": lambda u: np.sin(2 * u),
    "exp(u)-1": np.expm1,
    "log(1+u**2)": lambda u: np.log1p(u * u),
    "tanh(u)": np.tanh,
    "u/(1+u**2)": lambda u: u / (1 + u * u),
    "u**2/(1+u**2)": lambda u: u * u / (1 + u * u),
    "u**4/(1+u**4)": lambda u: (u * u) ** 2 / (1 + (u * u) ** 2),
    "u/(1+u+u**2)": lambda u: u / (1 + u + u * u),  # 1 + u + u^2 >= 3/4: never zero
}
"""Numpy code for each term (finite for every finite u)."""


def columns(u: np.ndarray, terms: tuple[str, ...] | list[str] = TERMS) -> np.ndarray:
    """Dictionary columns evaluated at ``u`` (any shape): shape ``u.shape + (len(terms),)``."""
    u = np.asarray(u, dtype=float)
    out = np.empty(u.shape + (len(terms),))
    for k, term in enumerate(terms):
        out[..., k] = TERM_FUNCTIONS[term](u)
    return out


def reaction(coefs: Mapping[str, float]) -> Callable[[np.ndarray], np.ndarray]:
    """f as a closure over pre-resolved term functions (the solver calls it once per time step)."""
    parts = [(TERM_FUNCTIONS[t], float(c)) for t, c in coefs.items()]

    def f(u: np.ndarray) -> np.ndarray:
        out = np.zeros_like(u)
        for fn, c in parts:
            out += c * fn(u)
        return out

    return f


def evaluate(coefs: Mapping[str, float], u: np.ndarray) -> np.ndarray:
    """f(u) for the given coefficients."""
    return reaction(coefs)(np.asarray(u, dtype=float))


def needs_parens(term: str) -> bool:
    """A term containing ``+`` or ``-`` must be parenthesised after its coefficient (cod.md 9.7)."""
    return "+" in term or "-" in term


def format_coefficient(c: float) -> str:
    """Three significant digits (the regression's printed form)."""
    text = f"{c:.3g}"
    return "0" if text in ("0", "-0") else text


def format_equation(coefs: Mapping[str, float]) -> str:
    """``1.2*u - 0.8*u**3`` in dictionary order; ``0`` for the empty equation."""
    parts: list[str] = []
    for term in TERMS:
        if term not in coefs or coefs[term] == 0:
            continue
        c = coefs[term]
        body = f"{format_coefficient(abs(c))}*{f'({term})' if needs_parens(term) else term}"
        parts.append(("-" if c < 0 else "+") + body)
    if not parts:
        return "0"
    text = " ".join(f"{p[0]} {p[1:]}" for p in parts)
    return text[2:] if text.startswith("+ ") else "-" + text[2:]


class EquationError(ValueError):
    """The text is not an equation over the dictionary with explicit numeric coefficients."""


_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
_PLAIN = sorted((t for t in TERMS if not needs_parens(t)), key=len, reverse=True)
_PAREN = sorted((f"({t})" for t in TERMS), key=len, reverse=True)
_PREFIX = re.compile(r"^f\(u\)=")


def parse_equation(text: object) -> Coefficients:
    """``[f(u) =] c1*term1 +- c2*term2 ...`` -> coefficients (repeated terms add up; zeros are dropped)."""
    if not isinstance(text, str):
        raise EquationError("the equation must be text")
    if len(text) > MAX_EQUATION_CHARS:
        raise EquationError(f"equation longer than {MAX_EQUATION_CHARS} characters")
    s = _PREFIX.sub("", "".join(text.split()))
    if not s:
        raise EquationError("empty equation")
    coefs: Coefficients = {}
    pos, count = 0, 0
    while pos < len(s):
        count += 1
        if count > MAX_SUMMANDS:
            raise EquationError(f"more than {MAX_SUMMANDS} summands")
        sign = 1.0
        if s[pos] in "+-":
            sign = -1.0 if s[pos] == "-" else 1.0
            pos += 1
        elif count > 1:
            raise EquationError(f"expected '+' or '-' at {s[pos : pos + 20]!r}")
        m = _NUMBER.match(s, pos)
        if m is None:
            sym = _SYMBOL.match(s, pos)
            if sym is not None:
                raise EquationError(f"symbolic coefficient {sym.group(0)[:20]!r}: coefficients must be numbers")
            raise EquationError(f"expected a numeric coefficient at {s[pos : pos + 20]!r}")
        value = float(m.group(0))
        if not math.isfinite(value) or abs(value) > 1e6:
            raise EquationError("coefficients must be finite numbers of magnitude at most 1e6")
        pos = m.end()
        if not s.startswith("*", pos):
            raise EquationError(f"expected '*<term>' after the coefficient {m.group(0)[:20]}")
        pos += 1
        term = _match_term(s, pos)
        if term is None:
            raise EquationError(f"unknown term at {s[pos : pos + 30]!r} (a term containing + or - needs parentheses)")
        pos += len(term)
        key = term[1:-1] if term.startswith("(") else term
        coefs[key] = coefs.get(key, 0.0) + sign * value
    return {t: c for t, c in coefs.items() if c != 0.0}


def _match_term(s: str, pos: int) -> str | None:
    """The longest dictionary spelling at ``pos`` that is followed by the end or a sign."""
    for spelling in (*_PAREN, *_PLAIN):
        end = pos + len(spelling)
        if s.startswith(spelling, pos) and (end == len(s) or s[end] in "+-"):
            return spelling
    return None


def vector(coefs: Mapping[str, float]) -> np.ndarray:
    """Coefficients as a vector over the 15 terms."""
    out = np.zeros(len(TERMS))
    for term, c in coefs.items():
        out[TERM_INDEX[term]] = c
    return out


def reward(submitted: Mapping[str, float], truth: Mapping[str, float]) -> float:
    """R = 1 / (1 + |c_hat - c|_1 / |c|_1 + max(0, |supp c_hat| - |supp c|)) (cod.md 9.7)."""
    c_hat, c = vector(submitted), vector(truth)
    norm = float(np.abs(c).sum()) or 1.0
    extra = max(0, int(np.count_nonzero(c_hat)) - int(np.count_nonzero(c)))
    return 1.0 / (1.0 + float(np.abs(c_hat - c).sum()) / norm + extra)
