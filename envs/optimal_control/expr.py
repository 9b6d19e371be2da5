"""The controller grammar of Optimal Control (cod.md 9.5): a whitelisted expression tree and our own tree walker.

Model text is never handed to ``eval``/``exec``/``compile``: ``ast.parse`` only builds a syntax tree, which is then
checked node by node against the whitelist and evaluated by :class:`Expression`. Cost is bounded at every stage: the
text is capped before parsing, the tree's size and depth are capped before the (recursive) whitelist check, every
constant is a bounded finite float, arithmetic runs on floats (so ``9**9**9`` is an ``OverflowError``, never a huge
integer), and the walker has a step budget.
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

VARIABLES: tuple[str, ...] = ("x", "v", "t", "x_target", "v_target", "horizon", "remaining_steps")
"""The state variables the expression may read (cod.md 9.5)."""
FUNCTION_ARITY: dict[str, tuple[int, int | None]] = {
    "abs": (1, 1),
    "min": (1, None),
    "max": (1, None),
    "pow": (2, 2),
    "clip": (3, 3),
    "ifelse": (3, 3),
    "lt": (2, 2),
    "le": (2, 2),
    "gt": (2, 2),
    "ge": (2, 2),
    "eq": (2, 2),
    "ne": (2, 2),
}
"""Callable bare names -> (min, max) positional arguments (None: unbounded)."""

MAX_EXPR_CHARS = 2_000
"""The expression text is cut off (rejected) above this length before ``ast.parse`` sees it."""
MAX_NODES = 256
"""Tree size cap (expression-context nodes not counted); also bounds the walker's work per evaluation."""
MAX_DEPTH = 64
"""Tree depth cap, checked iteratively before any recursive pass, so recursion stays far below Python's limit."""
MAX_CONSTANT = 1e12
"""Larger literals are rejected: no controller needs them, and they are the usual way to provoke overflow."""
STEP_BUDGET = 4 * MAX_NODES
"""Node visits allowed per evaluation (a tree of MAX_NODES nodes needs at most MAX_NODES)."""

_BINOPS: dict[type, Callable[[float, float], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: _pow(a, b),
}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}
_COMPARE_FUNCS: dict[str, type] = {
    "lt": ast.Lt,
    "le": ast.LtE,
    "gt": ast.Gt,
    "ge": ast.GtE,
    "eq": ast.Eq,
    "ne": ast.NotEq,
}
_UNARY = (ast.UAdd, ast.USub, ast.Not)
_ENTITY_RE = re.compile(r"&(#[0-9]{1,7}|#x[0-9a-fA-F]{1,6}|[A-Za-z]{1,8});|&")
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}
_ELEMENT_RE = re.compile(r"\A<action_expression\s*>(.*)</action_expression\s*>\Z", re.S)

Value = float | int | bool


class ExpressionError(ValueError):
    """The submission is not a valid controller expression (a format error: reward -0.1)."""


class EvaluationError(RuntimeError):
    """The walker refused to go on (step budget); a runtime failure like a division by zero (reward 0)."""


def _pow(a: float, b: float) -> float:
    """Float power; a complex result (negative base, fractional exponent) is an error, overflow raises."""
    result = a**b
    if isinstance(result, complex):
        raise ValueError("power with a negative base and a fractional exponent has no real value")
    return result


def parse_answer_xml(content: str) -> str:
    """The stripped expression text of ``<action_expression>...</action_expression>`` (cod.md 9.5 rule 3).

    A deliberately small XML subset: one element, no attributes, text only (no child elements, comments or CDATA),
    and only the five predefined entities and numeric character references. Stricter than a full XML parser, and
    immune to entity-expansion tricks because no DTD is ever read.
    """
    match = _ELEMENT_RE.match(content.strip())
    if match is None:
        raise ExpressionError("the answer must be a single <action_expression> element")
    inner = match.group(1)
    if "<" in inner:
        raise ExpressionError("<action_expression> must hold text only; escape '<' as '&lt;'")

    def entity(m: re.Match[str]) -> str:
        name = m.group(1)
        if name is None:
            raise ExpressionError("unescaped '&' in the expression")
        if name in _NAMED_ENTITIES:
            return _NAMED_ENTITIES[name]
        if name.startswith("#"):
            code = int(name[2:], 16) if name[1:2] == "x" else int(name[1:])
            if 0 < code <= 0x10FFFF:
                return chr(code)
        raise ExpressionError(f"unknown XML entity &{name};")

    return _ENTITY_RE.sub(entity, inner).strip()


def _size_and_depth_ok(tree: ast.AST) -> None:
    """Iterative walk: reject trees over MAX_NODES or MAX_DEPTH before anything recursive touches them."""
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        if isinstance(node, ast.expr_context):
            continue
        nodes += 1
        if nodes > MAX_NODES:
            raise ExpressionError(f"expression too large (more than {MAX_NODES} nodes)")
        if depth > MAX_DEPTH:
            raise ExpressionError(f"expression nested too deeply (more than {MAX_DEPTH} levels)")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _check(node: ast.AST) -> None:
    """Whitelist check, node by node; anything not listed is rejected with a reason."""
    if isinstance(node, ast.Constant):
        value = node.value
        if type(value) not in (int, float):
            raise ExpressionError(f"only numeric constants are allowed, got {type(value).__name__}")
        # Magnitude first: an int is compared exactly, whereas math.isfinite would convert it to float and raise
        # OverflowError beyond ~1.8e308 (a 310-digit literal); NaN fails the isfinite check that follows.
        if abs(value) > MAX_CONSTANT or not math.isfinite(value):
            raise ExpressionError(f"numeric constants must be finite with magnitude at most {MAX_CONSTANT:g}")
    elif isinstance(node, ast.Name):
        if node.id not in VARIABLES or not isinstance(node.ctx, ast.Load):
            raise ExpressionError(f"unknown name {node.id[:40]!r}; allowed variables: {', '.join(VARIABLES)}")
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            raise ExpressionError(f"operator {type(node.op).__name__} is not allowed")
        _check(node.left)
        _check(node.right)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, _UNARY):
            raise ExpressionError(f"unary operator {type(node.op).__name__} is not allowed")
        _check(node.operand)
    elif isinstance(node, ast.Compare):
        if not all(type(op) in _COMPARE for op in node.ops):
            raise ExpressionError("only == != < <= > >= comparisons are allowed")
        for child in (node.left, *node.comparators):
            _check(child)
    elif isinstance(node, ast.BoolOp):
        for child in node.values:
            _check(child)
    elif isinstance(node, ast.IfExp):
        for child in (node.test, node.body, node.orelse):
            _check(child)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTION_ARITY:
            raise ExpressionError(f"only calls by bare name to {', '.join(FUNCTION_ARITY)} are allowed")
        if node.keywords:
            raise ExpressionError("keyword arguments are not allowed")
        lo, hi = FUNCTION_ARITY[node.func.id]
        if len(node.args) < lo or (hi is not None and len(node.args) > hi):
            raise ExpressionError(f"{node.func.id}() takes {lo if lo == hi else f'at least {lo}'} argument(s)")
        for arg in node.args:
            _check(arg)
    else:
        raise ExpressionError(f"{type(node).__name__} is not allowed in an action expression")


@dataclass(frozen=True)
class Expression:
    """A whitelisted controller expression; :meth:`evaluate` walks it with a step budget."""

    body: ast.expr
    source: str
    """Canonical text (``ast.unparse`` of the checked tree)."""

    def evaluate(self, variables: Mapping[str, float]) -> Value:
        """The expression's value for one state; raises (ZeroDivisionError, OverflowError, ...) on a runtime failure."""
        budget = [STEP_BUDGET]
        return _eval(self.body, variables, budget)

    def xml(self) -> str:
        """The canonical XML submission of this expression (update trajectory, previous-policy block)."""
        text = self.source.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return f"<answer>\n  <action_expression>\n    {text}\n  </action_expression>\n</answer>"


def parse_expression(text: str) -> Expression:
    """Parse and whitelist-check one expression; raises :class:`ExpressionError` with a reason on any failure."""
    if not isinstance(text, str):
        raise ExpressionError("the expression must be text")
    text = text.strip()
    if not text:
        raise ExpressionError("empty action expression")
    if len(text) > MAX_EXPR_CHARS:
        raise ExpressionError(f"action expression longer than {MAX_EXPR_CHARS} characters")
    try:
        with warnings.catch_warnings():  # e.g. SyntaxWarning on "1if": the text is rejected or accepted, never noisy
            warnings.simplefilter("ignore")
            tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
        raise ExpressionError(f"not a valid expression ({type(exc).__name__})") from None
    _size_and_depth_ok(tree)
    _check(tree.body)
    return Expression(body=tree.body, source=ast.unparse(tree.body))


def _num(value: Value) -> float:
    """Arithmetic runs on floats only, so no operation can build an unbounded integer."""
    return float(value)


def _eval(node: ast.expr, env: Mapping[str, float], budget: list[int]) -> Value:
    budget[0] -= 1
    if budget[0] < 0:
        raise EvaluationError("evaluation step budget exceeded")
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return float(env[node.id])
    if isinstance(node, ast.BinOp):
        left, right = _num(_eval(node.left, env, budget)), _num(_eval(node.right, env, budget))
        return _BINOPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, env, budget)
        if isinstance(node.op, ast.Not):
            return not operand
        return -_num(operand) if isinstance(node.op, ast.USub) else _num(operand)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env, budget)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, env, budget)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.BoolOp):
        value: Value = False
        for child in node.values:
            value = _eval(child, env, budget)
            if isinstance(node.op, ast.And) and not value:
                return value
            if isinstance(node.op, ast.Or) and value:
                return value
        return value
    if isinstance(node, ast.IfExp):
        chosen = node.body if _eval(node.test, env, budget) else node.orelse
        return _eval(chosen, env, budget)
    if isinstance(node, ast.Call):
        return _call(node, env, budget)
    raise EvaluationError(f"{type(node).__name__} cannot be evaluated")  # unreachable after _check


def _call(node: ast.Call, env: Mapping[str, float], budget: list[int]) -> Value:
    name = node.func.id  # type: ignore[attr-defined]  # _check guarantees a bare Name
    if name == "ifelse":
        chosen = node.args[1] if _eval(node.args[0], env, budget) else node.args[2]
        return _eval(chosen, env, budget)
    args = [_eval(arg, env, budget) for arg in node.args]
    if name == "abs":
        return abs(_num(args[0]))
    if name == "min":
        return min(args)
    if name == "max":
        return max(args)
    if name == "pow":
        return _pow(_num(args[0]), _num(args[1]))
    if name == "clip":
        return min(max(args[0], args[1]), args[2])
    return _COMPARE[_COMPARE_FUNCS[name]](args[0], args[1])
