"""Template families of hidden reaction terms (cod.md 9.7), written by this project from physically motivated models.

The reference reads ``physical_full_train.json`` and ``physical_full_eval_4000.json``, which are not available; these
tables play their role. A template is a tuple of (term, sign) with sign ``+1``, ``-1`` or ``0`` (drawn at random).
Highest-order terms carry a damping sign so that the hidden equations stay bounded on the state box (-3, 3). Training
uses 1-2 term templates, evaluation 25 templates of 1-3 terms, none of which (as a signed term set) is a training
template: :func:`disjointness_violations` checks it, and any other pair of families.
"""

from __future__ import annotations

from cod_envs.pde_discovery.terms import TERMS

Template = tuple[tuple[str, int], ...]

TRAIN: tuple[Template, ...] = (
    (("u", 0),),  # linear growth or decay
    (("u**3", -1),),  # cubic damping
    (("sin(u)", 0),),  # pendulum / sine-Gordon-type restoring force
    (("tanh(u)", 0),),  # saturating firing-rate nonlinearity
    (("u/(1+u**2)", 0),),  # self-limiting activation
    (("u**2/(1+u**2)", 1),),  # Hill-type (n = 2) autocatalytic source
    (("log(1+u**2)", -1),),  # logarithmic sink
    (("u", 1), ("u**2", -1)),  # Fisher-KPP logistic growth
    (("u", 1), ("u**3", -1)),  # Allen-Cahn / Nagumo bistable
    (("u**2", 1), ("u**3", -1)),  # Zeldovich combustion front
    (("u", -1), ("u**2/(1+u**2)", 1)),  # gene autoactivation with linear decay
    (("u", -1), ("u**4/(1+u**4)", 1)),  # steep (n = 4) Hill switch with decay
    (("tanh(u)", 1), ("u", -1)),  # neural field: saturating drive, leak
    (("exp(u)-1", 1), ("u**2", -1)),  # Frank-Kamenetskii ignition with quadratic loss
    (("sin(u)", 1), ("u**3", -1)),  # damped sine-Gordon
    (("u", 1), ("u**5", -1)),  # quintic saturation
    (("u/(1+u+u**2)", 1), ("u", -1)),  # Haldane substrate-inhibition kinetics with washout
    (("u", 1), ("u/(1+u**2)", -1)),  # predation-type (Holling III-like) loss
    (("sin(2*u)", 1), ("u**3", -1)),  # double-well periodic forcing
    (("log(1+u**2)", 1), ("u**3", -1)),  # logarithmic source with cubic damping
    (("u**2", -1),),  # quadratic annihilation
    (("exp(u)-1", -1),),  # exponential sink
    (("u**4/(1+u**4)", -1),),  # saturating switch-like consumption
    (("u/(1+u+u**2)", 0),),  # substrate inhibition alone
    (("tanh(u)", -1), ("u**2", 1)),  # autocatalysis against saturating removal
    (("u**2/(1+u**2)", -1), ("u", 1)),  # logistic-like growth with Hill harvesting
)
"""Training family: 1-2 terms."""

EVAL: tuple[Template, ...] = (
    (("u", 1), ("u**3", 1), ("u**5", -1)),  # subcritical quintic Ginzburg-Landau
    (("u", -1), ("u**2", 1), ("u**3", -1)),  # strong Allee effect
    (("u", 1), ("u**2", -1), ("u**3", -1)),  # logistic with cubic crowding
    (("exp(u)-1", 1), ("u", -1), ("u**3", -1)),  # Bratu ignition with linear and cubic losses
    (("u**2/(1+u**2)", 1), ("u", -1), ("u**3", -1)),  # Hill activation with decay and crowding
    (("tanh(u)", 1), ("u**3", -1)),  # saturating drive, cubic damping
    (("sin(u)", 1), ("u", -1)),  # restoring pendulum with friction-like loss
    (("u", 1), ("u**7", -1)),  # septic saturation
    (("u**4/(1+u**4)", 1), ("u", -1), ("u**2", -1)),  # steep switch with linear and quadratic losses
    (("u/(1+u+u**2)", 1), ("u**3", -1)),  # Haldane kinetics with crowding
    (("sin(2*u)", 0),),  # periodic double-well forcing alone
    (("u**5", -1),),  # quintic damping
    (("u", 1), ("log(1+u**2)", -1)),  # growth with logarithmic sink
    (("u/(1+u**2)", 1), ("u**3", -1)),  # self-limiting activation with damping
    (("exp(u)-1", 1), ("u**3", -1)),  # ignition with cubic loss
    (("u**2", 1), ("u**5", -1)),  # quadratic autocatalysis, quintic saturation
    (("tanh(u)", 1), ("u", -1), ("u**3", -1)),  # neural field with leak and cubic damping
    (("sin(u)", 1), ("u**2", -1), ("u**3", -1)),  # damped sine-Gordon with asymmetric loss
    (("u", -1), ("u**2/(1+u**2)", 1), ("u**4/(1+u**4)", 1)),  # two-stage cooperative activation with decay
    (("u**7", -1),),  # septic damping
    (("u", 1), ("u**2", 1), ("u**3", -1)),  # cooperative growth, cubic crowding
    (("log(1+u**2)", 1), ("u", -1)),  # logarithmic source with decay
    (("u**4/(1+u**4)", 1), ("u**3", -1)),  # switch with cubic damping
    (("sin(2*u)", 1), ("u", -1), ("u**5", -1)),  # periodic forcing with leak and quintic damping
    (("u/(1+u+u**2)", 1), ("u**2", -1), ("u", 1)),  # Haldane plus logistic growth
)
"""Evaluation family: 25 templates of 1-3 terms (``ground_truth_template_index`` indexes this tuple)."""

FAMILIES: dict[str, tuple[Template, ...]] = {"physical_train": TRAIN, "physical_eval": EVAL}


def signed_sets(template: Template) -> set[frozenset[tuple[str, int]]]:
    """Every signed term set a template can produce (an unsigned term gives both signs)."""
    out: set[frozenset[tuple[str, int]]] = {frozenset()}
    for term, sign in template:
        signs = (1, -1) if sign == 0 else (sign,)
        out = {s | {(term, g)} for s in out for g in signs}
    return out


def disjointness_violations(a: tuple[Template, ...], b: tuple[Template, ...]) -> list[Template]:
    """Templates of ``b`` that can produce an equation structure (signed term set) that ``a`` can produce."""
    seen = set().union(*(signed_sets(t) for t in a)) if a else set()
    return [t for t in b if signed_sets(t) & seen]


def validate(family: tuple[Template, ...]) -> None:
    """Every term is in the dictionary, no term repeats within a template, signs are -1, 0 or +1."""
    for template in family:
        terms = [t for t, _ in template]
        if len(set(terms)) != len(terms) or not terms:
            raise ValueError(f"template {template} repeats a term or is empty")
        for term, sign in template:
            if term not in TERMS or sign not in (-1, 0, 1):
                raise ValueError(f"bad template entry {(term, sign)}")
