"""Parsing the PDE Discovery answer (cod.md 9.7): one XML element per response, tag = action, children = arguments.

A deliberately small XML subset: no DTD, comments, CDATA or processing instructions (so no entity expansion can be
provoked), a size cap before the parser sees the text, and argument values read as plain text. Format errors end the
task; argument errors (``ArgumentError``) are reported with ``Error:`` and the task goes on.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from cod_envs.base import MAX_ACTION_CHARS, extract_answer
from cod_envs.pde_discovery.terms import TERMS, EquationError, parse_equation

ACTIONS = ("sample_pde_data", "summarize_pack_evidence", "run_sparse_regression", "update_scientific_context")
MAX_XML_CHARS = 20_000
MAX_POINTS_LISTED = 64
MAX_EQUATIONS = 8
MAX_UNCERTAIN = 4
MAX_NOTE_CHARS = 2_000

INVALID_FORMAT = "Invalid format: expected exactly one XML action wrapped in <answer>...</answer>. Game over."
UNKNOWN_ACTION = "Invalid action: unknown action '{name}'. Game over."
NON_ELEMENT = "Invalid format: the arguments of <{name}> must be child elements. Game over."


class FormatError(ValueError):
    """Ends the task with reward 0 and ``format_error``; the message is the feedback."""


class ArgumentError(ValueError):
    """An ``Error:`` message; the task continues."""


@dataclass(frozen=True)
class Action:
    """A parsed action: its name and the root element (arguments are read by the ``read_*`` helpers)."""

    name: str
    element: ET.Element


def parse_action(text: object) -> Action:
    """The single action of a response; raises :class:`FormatError` with the spec's feedback otherwise."""
    if not isinstance(text, str):
        raise FormatError(INVALID_FORMAT)
    text = text[:MAX_ACTION_CHARS]
    content = extract_answer(text)
    if content is None or text[text.index("</answer>") + len("</answer>") :].strip():
        raise FormatError(INVALID_FORMAT)
    if not content or len(content) > MAX_XML_CHARS or "<!" in content or "<?" in content:
        raise FormatError(INVALID_FORMAT)
    try:
        root = ET.fromstring(content)
    except (ET.ParseError, ValueError, RecursionError):
        raise FormatError(INVALID_FORMAT) from None
    name = root.tag if isinstance(root.tag, str) else ""
    if name not in ACTIONS:
        raise FormatError(UNKNOWN_ACTION.format(name=name[:60]))
    if (root.text or "").strip() or any((child.tail or "").strip() for child in root):
        raise FormatError(NON_ELEMENT.format(name=name))
    return Action(name, root)


def _text(element: ET.Element | None) -> str | None:
    if element is None:
        return None
    try:
        return "".join(element.itertext())[:MAX_XML_CHARS].strip()
    except RecursionError:
        raise ArgumentError("Error: argument nested too deeply.") from None


def read_float(action: Action, tag: str, default: float, lo: float, hi: float) -> float:
    """A numeric argument in [lo, hi], or the default when absent."""
    raw = _text(action.element.find(tag))
    if raw is None or raw == "":
        return default
    try:
        value = float(raw[:64])
    except ValueError:
        raise ArgumentError(f"Error: <{tag}> must be a number, got {raw[:40]!r}.") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ArgumentError(f"Error: <{tag}> must lie in [{lo:g}, {hi:g}], got {raw[:40]}.")
    return value


def read_text(action: Action, tag: str, limit: int = 200) -> str | None:
    """A text argument (None when absent)."""
    raw = _text(action.element.find(tag))
    return None if raw is None else raw[:limit]


def read_points(action: Action) -> list[tuple[float, float]]:
    """``<point_grid><point x=".." t=".."/>...</point_grid>``, each with 0 < x < 1 and 0 <= t <= 1."""
    grid = action.element.find("point_grid")
    points = [] if grid is None else grid.findall("point")
    if not points:
        raise ArgumentError('Error: sample_pde_data needs <point_grid> with at least one <point x=".." t=".."/>.')
    if len(points) > MAX_POINTS_LISTED:
        raise ArgumentError(f"Error: at most {MAX_POINTS_LISTED} points may be listed.")
    out = []
    for p in points:
        try:
            x, t = float(p.get("x", "nan")[:64]), float(p.get("t", "nan")[:64])
        except ValueError:
            raise ArgumentError("Error: every point needs numeric x and t attributes.") from None
        if not (0.0 < x < 1.0 and 0.0 <= t <= 1.0):
            raise ArgumentError(f"Error: point (x={x:g}, t={t:g}) is outside 0 < x < 1, 0 <= t <= 1.")
        out.append((x, t))
    return out


def read_terms(action: Action, tag: str, limit: int) -> list[str] | None:
    """``<tag><term>u</term>...</tag>``: dictionary terms (whitespace ignored), None when the tag is absent."""
    node = action.element.find(tag)
    if node is None:
        return None
    out: list[str] = []
    for child in node.findall("term")[: limit + 1]:
        term = "".join((_text(child) or "").split())
        if term.startswith("(") and term.endswith(")") and term[1:-1] in TERMS:
            term = term[1:-1]
        if term not in TERMS:
            raise ArgumentError(f"Error: unknown dictionary term {term[:40]!r}.")
        out.append(term)
    if len(out) > limit:
        raise ArgumentError(f"Error: <{tag}> holds more than {limit} terms.")
    return out


def read_equations(action: Action) -> list[dict[str, float]] | None:
    """``<candidate_equations><equation>..</equation>...</candidate_equations>`` (1-8 equations), None if absent."""
    node = action.element.find("candidate_equations")
    if node is None:
        return None
    items = node.findall("equation")
    if not 1 <= len(items) <= MAX_EQUATIONS:
        raise ArgumentError(f"Error: <candidate_equations> needs 1 to {MAX_EQUATIONS} <equation> elements.")
    return [equation(_text(item) or "") for item in items]


def equation(text: str) -> dict[str, float]:
    """An equation argument, or an ``Error:`` naming the problem."""
    try:
        coefs = parse_equation(text)
    except EquationError as exc:
        raise ArgumentError(f"Error: invalid equation {text[:80]!r}: {exc}.") from None
    if not coefs:
        raise ArgumentError("Error: the equation has no nonzero term.")
    return coefs
