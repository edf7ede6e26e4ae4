"""The rule specs: ``specs/rules/<rule>.toml`` read into Python objects.

A rule spec is the machine-readable description of one update rule that a port in any
language can consume (``specs/README.md`` documents every key): the equations in the order
``Rule.trace`` reports them, each with the trace name it produces, a LaTeX and a plain-text
form and the option condition (``when``) under which it applies; the hyper-parameters with
their defaults and valid ranges; the state fields; every option with the implementations that
use each variant; the presets; and the known discrepancies between papers and code.

This is a host-side module: it reads files and compares Python values, and imports no array
library.  Batched hyper-parameters (NumPy arrays) are compared through their own ``==``.

Where the specs live
    In a source checkout or an editable install they are the repository's top-level
    ``specs/`` folder, next to the package directory (``<repo>/refopt`` ->
    ``<repo>/specs``).  The wheel copies that folder into the package as ``refopt/_specs``
    (pyproject's ``force-include``), so an installed refopt finds them next to this module.
    :func:`locate` prefers the packaged copy.

Conditions (the ``when`` of an equation, a state field or a discrepancy's ``reproduce``)
    A small language that any port can evaluate::

        expr       := conjunct ("or" conjunct)*
        conjunct   := unary ("and" unary)*
        unary      := "not" unary | "(" expr ")" | comparison
        comparison := NAME ("=" | "!=") VALUE
        VALUE      := true | false | none | a number | a "double-quoted" string

    NAME is a hyper-parameter (``amsgrad``), a part of a pair (``beta1``), or a per-step
    scalar of the trace (``rectified``).  ``none`` is Python's None (TOML has no null).  A
    number compares by value (``momentum != 0``); for a batched hyper-parameter ``=`` holds
    when every entry is equal and ``!=`` is its negation.  ``and`` and ``or`` are evaluated
    left to right and stop once the result is decided, so a condition may guard a name that
    exists only under an option: ``rectify = true and rectified = true``.
"""

from __future__ import annotations

import difflib
import functools
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "SCHEMA",
    "Condition",
    "Equation",
    "RuleSpec",
    "StateField",
    "context",
    "format_equations",
    "load",
    "locate",
    "names",
    "parse",
    "specs_dir",
]

SCHEMA = "refopt_rule_spec_v1"
"""The value of every rule spec's ``schema`` key, also the name of its JSON Schema
(``specs/schema/refopt_rule_spec_v1.schema.json``); bumped when a key changes meaning."""

_PACKAGE_DIR = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------
# where the specs are
# ---------------------------------------------------------------------------------------


def locate(package_dir: str | Path = _PACKAGE_DIR) -> Path:
    """The specs folder for the package installed at ``package_dir``.

    ``package_dir/_specs`` (an installed wheel) when it exists, else ``package_dir/../specs``
    (a source checkout or an editable install).  FileNotFoundError naming both places when
    neither holds a ``rules`` folder.
    """
    package_dir = Path(package_dir)
    candidates = (package_dir / "_specs", package_dir.parent / "specs")
    for folder in candidates:
        if (folder / "rules").is_dir():
            return folder
    raise FileNotFoundError(
        "refopt's specs are missing: looked for a 'rules' folder in "
        + " and in ".join(str(c) for c in candidates)
        + " (an installed wheel has refopt/_specs; a source checkout has specs/ next to refopt/)"
    )


def specs_dir() -> Path:
    """The specs folder of this refopt (see :func:`locate`)."""
    return locate(_PACKAGE_DIR)


def names() -> list[str]:
    """The rules that have a spec file, sorted."""
    return sorted(p.stem for p in (specs_dir() / "rules").glob("*.toml"))


# ---------------------------------------------------------------------------------------
# conditions
# ---------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r'\s*(?:(?P<op>!=|=|\(|\))|(?P<str>"[^"]*")|(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf\b)'
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*))"
)
_KEYWORDS = {"and", "or", "not", "true", "false", "none"}
_UNKNOWN = None  # a condition on a name the context does not hold is undecided


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ValueError(f"condition {text!r}: cannot read {text[pos:].strip()!r} (at character {pos})")
        pos = match.end()
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "str":
            tokens.append(("value", value[1:-1]))
        elif kind == "num":
            tokens.append(("value", float(value)))
        elif kind == "word" and value in ("true", "false"):
            tokens.append(("value", value == "true"))
        elif kind == "word" and value == "none":
            tokens.append(("value", None))
        elif kind == "word" and value in _KEYWORDS:
            tokens.append((value, value))
        elif kind == "word":
            tokens.append(("name", value))
        else:
            tokens.append((value, value))
    return tokens


class Condition:
    """A parsed ``when`` expression (grammar in the module docstring).

    ``Condition('amsgrad = true and amsgrad_max = "raw"').evaluate({"amsgrad": True, ...})``
    returns True or False; with ``partial=True`` a name missing from the context makes the
    result undecided (None) instead of raising, with three-valued ``and``/``or``/``not``.
    """

    def __init__(self, text: str):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"a condition must be a non-empty string; got {text!r}")
        self.text = text.strip()
        self._tokens = _tokenize(self.text)
        self._pos = 0
        self._tree = self._expr()
        if self._pos != len(self._tokens):
            raise ValueError(f"condition {self.text!r}: unexpected {self._tokens[self._pos][1]!r}")
        del self._tokens

    # -- parser: nested tuples ("or", a, b) / ("and", a, b) / ("not", a) / ("cmp", op, name, value)

    def _peek(self):
        return self._tokens[self._pos][0] if self._pos < len(self._tokens) else None

    def _take(self, kind):
        if self._peek() != kind:
            got = self._tokens[self._pos][1] if self._pos < len(self._tokens) else "the end"
            raise ValueError(f"condition {self.text!r}: expected {kind}, got {got!r}")
        token = self._tokens[self._pos]
        self._pos += 1
        return token[1]

    def _expr(self):
        node = self._conjunct()
        while self._peek() == "or":
            self._pos += 1
            node = ("or", node, self._conjunct())
        return node

    def _conjunct(self):
        node = self._unary()
        while self._peek() == "and":
            self._pos += 1
            node = ("and", node, self._unary())
        return node

    def _unary(self):
        if self._peek() == "not":
            self._pos += 1
            return ("not", self._unary())
        if self._peek() == "(":
            self._pos += 1
            node = self._expr()
            self._take(")")
            return node
        name = self._take("name")
        op = self._peek()
        if op not in ("=", "!="):
            raise ValueError(f"condition {self.text!r}: expected = or != after {name!r}")
        self._pos += 1
        return ("cmp", op, name, self._take("value"))

    # -- evaluation ---------------------------------------------------------------------

    @property
    def names(self) -> frozenset[str]:
        """Every name the condition reads."""
        out: set[str] = set()

        def walk(node):
            if node[0] == "cmp":
                out.add(node[2])
            else:
                for child in node[1:]:
                    walk(child)

        walk(self._tree)
        return frozenset(out)

    def evaluate(self, ctx: Mapping[str, Any], partial: bool = False) -> bool | None:
        """True or False in ``ctx``; None (undecided) for a missing name when ``partial``."""
        return self._eval(self._tree, ctx, partial)

    def _eval(self, node, ctx, partial):
        head = node[0]
        if head == "cmp":
            _, op, name, value = node
            if name not in ctx:
                if partial:
                    return _UNKNOWN
                raise ValueError(
                    f"condition {self.text!r} reads {name!r}, which the context does not hold "
                    f"(it has {', '.join(sorted(ctx))})"
                )
            equal = _equal(ctx[name], value, name, self.text)
            return equal if op == "=" else not equal
        if head == "not":
            inner = self._eval(node[1], ctx, partial)
            return None if inner is None else not inner
        # left to right, stopping once decided: 'rectify = true and rectified = true' never
        # reads `rectified` (a per-step scalar that exists only with rectify) when rectify is off
        left = self._eval(node[1], ctx, partial)
        decided = False if head == "and" else True
        if left is decided:
            return decided
        right = self._eval(node[2], ctx, partial)
        if right is decided:
            return decided
        return None if left is None or right is None else not decided

    def residual(self, ctx: Mapping[str, Any]) -> bool | str:
        """What is left of the condition once the names in ``ctx`` are known: True, False,
        or the text of the undecided part (``rectified = false and warmup = "sgd"`` with
        ``warmup`` known gives ``rectified = false``)."""
        node = self._residual(self._tree, ctx)
        return node if isinstance(node, bool) else _render(node)

    def _residual(self, node, ctx):
        head = node[0]
        if head == "cmp":
            return self._eval(node, ctx, True) if node[2] in ctx else node
        if head == "not":
            inner = self._residual(node[1], ctx)
            return (not inner) if isinstance(inner, bool) else ("not", inner)
        left, right = self._residual(node[1], ctx), self._residual(node[2], ctx)
        absorbing = head == "or"  # True absorbs an or, False absorbs an and
        if left is absorbing or right is absorbing:
            return absorbing
        if isinstance(left, bool):  # the neutral element: the other side decides
            return right
        if isinstance(right, bool):
            return left
        return (head, left, right)

    def __repr__(self) -> str:
        return f"Condition({self.text!r})"

    def __str__(self) -> str:
        return self.text


def _render(node, parent: str = "") -> str:
    """A parsed condition back to text, with parentheses only where needed."""
    head = node[0]
    if head == "cmp":
        _, op, name, value = node
        if isinstance(value, bool):
            literal = "true" if value else "false"
        elif value is None:
            literal = "none"
        elif isinstance(value, str):
            literal = f'"{value}"'
        else:
            literal = repr(value) if not float(value).is_integer() else str(int(value))
        return f"{name} {op} {literal}"
    if head == "not":
        return "not " + _render(node[1], "not")
    text = f"{_render(node[1], head)} {head} {_render(node[2], head)}"
    needs_parentheses = parent == "not" or (parent == "and" and head == "or")
    return f"({text})" if needs_parentheses else text


def _equal(actual: Any, literal: Any, name: str, text: str) -> bool:
    """``actual = literal`` with the condition language's typing rules."""
    if literal is None:
        return actual is None
    if isinstance(literal, bool):
        if not _is_bool(actual):
            raise ValueError(f"condition {text!r} compares {name}={actual!r} with a bool")
        return bool(actual) == literal
    if isinstance(literal, str):
        if not isinstance(actual, str):
            raise ValueError(f"condition {text!r} compares {name}={actual!r} with a string")
        return actual == literal
    # a number
    if actual is None:
        return False
    if _is_bool(actual) or isinstance(actual, str):
        raise ValueError(f"condition {text!r} compares {name}={actual!r} with a number")
    if hasattr(actual, "shape"):  # a batched hyper-parameter: equal everywhere
        return bool((actual == literal).all())
    return float(actual) == literal


def _is_bool(x: Any) -> bool:
    """A Python bool or a NumPy bool scalar (named ``bool`` in NumPy 2, ``bool_`` before)."""
    kind = type(x)
    return isinstance(x, bool) or (kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_"))


# ---------------------------------------------------------------------------------------
# the spec objects
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Equation:
    """One line of the algorithm: the trace entry ``name`` and how it is computed."""

    name: str
    text: str
    latex: str
    kind: str  # "scalar" (one host number per step) or "array" (shaped like the params)
    when: Condition | None = None
    note: str = ""

    def applies(self, ctx: Mapping[str, Any], partial: bool = False) -> bool | None:
        """Whether this line is part of the algorithm for the options in ``ctx``."""
        return True if self.when is None else self.when.evaluate(ctx, partial)


@dataclass(frozen=True)
class StateField:
    """One state slot: its name, its initial value (``"0"`` or a hyper-parameter's name),
    and the condition under which the slot exists."""

    name: str
    init: str
    meaning: str
    when: Condition | None = None

    def applies(self, ctx: Mapping[str, Any], partial: bool = False) -> bool | None:
        return True if self.when is None else self.when.evaluate(ctx, partial)


@dataclass(frozen=True)
class RuleSpec:
    """A parsed ``specs/rules/<rule>.toml``; ``raw`` keeps every key as TOML gave it."""

    rule: str
    title: str
    citation: str
    path: Path
    equations: tuple[Equation, ...]
    state: tuple[StateField, ...]
    raw: Mapping[str, Any]

    @property
    def hyper(self) -> list[dict]:
        return list(self.raw["hyper"])

    @property
    def options(self) -> list[dict]:
        return list(self.raw.get("options", ()))

    @property
    def presets(self) -> list[dict]:
        return list(self.raw.get("presets", ()))

    @property
    def discrepancies(self) -> list[dict]:
        return list(self.raw.get("discrepancies", ()))

    @property
    def symbols(self) -> dict[str, str]:
        return dict(self.raw.get("symbols", {}))

    @property
    def references(self) -> list[dict]:
        return list(self.raw.get("references", ()))

    def equations_for(self, ctx: Mapping[str, Any], partial: bool = False) -> list[Equation]:
        """The equations that apply under ``ctx``, in order.

        With ``partial=True`` an equation whose condition reads a name missing from ``ctx``
        (a per-step quantity such as ``rectified``) is kept: it applies on some steps.
        """
        return [eq for eq in self.equations if eq.applies(ctx, partial) is not False]

    def trace_names(self, ctx: Mapping[str, Any]) -> list[str]:
        """The trace names that ``Rule.trace`` reports under ``ctx`` (hyper-parameters and
        the step's scalars), in order."""
        return [eq.name for eq in self.equations_for(ctx)]

    def state_for(self, ctx: Mapping[str, Any]) -> list[str]:
        """The state slot names under the options in ``ctx``, in order."""
        return [f.name for f in self.state if f.applies(ctx)]


def context(rule: Any) -> dict[str, Any]:
    """The names a condition may read for a configured rule: its hyper-parameters, with
    a pair's parts under their own names as well (``betas`` -> ``beta1``, ``beta2``)."""
    ctx: dict[str, Any] = {}
    for h in type(rule).HYPER:
        value = rule.hyper[h.name]
        ctx[h.name] = value
        for part, x in zip(getattr(h, "parts", ()) or (), value if isinstance(value, tuple) else ()):
            ctx[part.name] = x
    return ctx


_REQUIRED = ("schema", "rule", "title", "citation", "references", "equations", "hyper", "state")
_EQUATION_KEYS = {"name", "text", "latex", "kind", "when", "note"}
_STATE_KEYS = {"name", "init", "meaning", "when"}


def _problem(path: Path, what: str) -> ValueError:
    return ValueError(f"{path}: {what}")


def _condition(path: Path, where: str, text: Any) -> Condition | None:
    if text is None:
        return None
    try:
        return Condition(text)
    except ValueError as exc:
        raise _problem(path, f"{where}: {exc}") from None


def parse(path: str | Path) -> RuleSpec:
    """Read and check the structure of one spec file (not its agreement with the code:
    the tests do that)."""
    path = Path(path)
    with open(path, "rb") as fh:
        try:
            raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise _problem(path, f"not valid TOML: {exc}") from None
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise _problem(path, f"missing key {missing[0]!r} (a rule spec has {', '.join(_REQUIRED)})")
    if raw["schema"] != SCHEMA:
        raise _problem(path, f"schema is {raw['schema']!r}; this refopt reads {SCHEMA!r}")
    if raw["rule"] != path.stem:
        raise _problem(path, f"rule is {raw['rule']!r} but the file is named {path.name!r}")
    equations = []
    for i, eq in enumerate(raw["equations"]):
        where = f"equations[{i}]"
        unknown = set(eq) - _EQUATION_KEYS
        if unknown:
            raise _problem(path, f"{where} has unknown key {sorted(unknown)[0]!r} (known: {sorted(_EQUATION_KEYS)})")
        for key in ("name", "text", "latex", "kind"):
            if not isinstance(eq.get(key), str) or not eq[key]:
                raise _problem(path, f"{where} needs a non-empty string {key!r}")
        if eq["kind"] not in ("scalar", "array"):
            raise _problem(path, f"{where} ({eq['name']}): kind must be 'scalar' or 'array'; got {eq['kind']!r}")
        equations.append(
            Equation(eq["name"], eq["text"], eq["latex"], eq["kind"],
                     _condition(path, f"{where} ({eq['name']})", eq.get("when")), eq.get("note", ""))
        )
    state = []
    for i, f in enumerate(raw["state"]):
        unknown = set(f) - _STATE_KEYS
        if unknown:
            raise _problem(path, f"state[{i}] has unknown key {sorted(unknown)[0]!r} (known: {sorted(_STATE_KEYS)})")
        state.append(StateField(f["name"], f["init"], f.get("meaning", ""),
                                _condition(path, f"state[{i}] ({f['name']})", f.get("when"))))
    return RuleSpec(raw["rule"], raw["title"], raw["citation"], path, tuple(equations), tuple(state), raw)


@functools.lru_cache(maxsize=None)
def _load_cached(folder: str, rule: str) -> RuleSpec:
    return parse(Path(folder) / "rules" / f"{rule}.toml")


def load(rule: str) -> RuleSpec:
    """The spec of the rule called ``rule``; ValueError with close matches when there is none."""
    known = names()
    if not isinstance(rule, str) or rule not in known:
        close = difflib.get_close_matches(str(rule), known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"no rule spec for {rule!r}{hint} (known: {', '.join(known)})")
    return _load_cached(str(specs_dir()), rule)


def format_equations(spec: RuleSpec, ctx: Mapping[str, Any] | None = None, indent: str = "  ") -> str:
    """The plain-text algorithm box: one line per equation, its trace name on the left.

    With ``ctx`` only the equations that apply are shown; one that applies on some steps
    only (its condition reads a per-step quantity) carries its condition in brackets.
    """
    chosen: Iterable[Equation] = spec.equations if ctx is None else spec.equations_for(ctx, partial=True)
    chosen = list(chosen)
    width = max((len(eq.name) for eq in chosen), default=0)
    lines = []
    for eq in chosen:
        line = f"{indent}{eq.name:<{width}}  {eq.text}"
        if eq.when is not None:
            rest = eq.when.text if ctx is None else eq.when.residual(ctx)
            if isinstance(rest, str):
                line += f"   [when {rest}]"
        lines.append(line)
    return "\n".join(lines)

