"""Trace a rule's per-leaf step into an elementwise program, and print it as C/CUDA.

A rule writes its algorithm box once, in ``_leaf(xp, p, g, s, c)``.  Running that same method
on *symbols* instead of arrays records the box as a straight-line program: one node per
operation, in exactly the order the reference evaluates them.  Two things follow:

* the trace is a certificate that the step is elementwise (every output element depends only
  on the same element of the inputs), which is what lets :mod:`refopt.fast._numpy` evaluate
  the reference on blocks;
* printing the program one statement per node gives the body of a CUDA elementwise kernel
  (:mod:`refopt.fast._cupy`) that performs the reference's operations in the reference's
  order, so that with FMA contraction disabled it rounds exactly like the reference does.

Typing follows the array API's rules for Python scalars, which is how the reference rounds:

* arrays (``p``, ``g``, the state slots) have the kernel's element type ``T``;
* the rule's coefficients (``c.lr``, ``c.bc1``, ...) are Python floats, i.e. doubles; an
  operation between two of them stays a double, as it would in Python;
* a double meeting an array is rounded to ``T`` first (a weak scalar), then the operation is
  done in ``T``.

Only operations that a CUDA kernel does correctly rounded (``+ - * /``, ``sqrt``, compares,
selects, ``abs``, negation) are bit-exact on a GPU; ``exp`` is not (CUDA's ``expf`` is within
2 ulp, NumPy's within its SIMD library's bound), so rules that use it meet the reference within
their vectors' tolerance class instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NotElementwise", "Program", "ProgramCache", "trace_leaf"]


class NotElementwise(TypeError):
    """The rule's step uses something the elementwise tracer does not know."""


class StepCount(int):
    """The step count ``t`` during tracing: usable in Python ``if`` tests, not in array arithmetic.

    A rule may branch on ``t`` (SGD's first momentum step), which changes the program; every
    comparison is recorded, so that a program can be reused at any later step for which the
    same comparisons come out the same.  ``t`` must not enter array arithmetic (that belongs
    in ``_scalars``): the program would differ at every step.
    """

    def __new__(cls, value: int, log: list):
        obj = super().__new__(cls, value)
        obj.log = log
        return obj

    def _record(self, op, other, result):
        self.log.append((op, other, result))
        return result

    def __eq__(self, o): return self._record("==", o, int(self) == o)
    def __ne__(self, o): return self._record("!=", o, int(self) != o)
    def __lt__(self, o): return self._record("<", o, int(self) < o)
    def __le__(self, o): return self._record("<=", o, int(self) <= o)
    def __gt__(self, o): return self._record(">", o, int(self) > o)
    def __ge__(self, o): return self._record(">=", o, int(self) >= o)
    __hash__ = int.__hash__


_COMPARE = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


@dataclass(eq=False)
class Node:
    prog: "Program"
    op: str
    args: tuple
    kind: str  # "array" (type T), "scalar" (double), "bool" (a per-element condition)
    name: str = ""

    # -- arithmetic: each call appends one node in evaluation order -------------------
    def _bin(self, op, other, swap=False):
        o = self.prog.operand(other)
        a, b = (o, self) if swap else (self, o)
        return self.prog.binary(op, a, b)

    def __add__(self, o): return self._bin("+", o)
    def __radd__(self, o): return self._bin("+", o, True)
    def __sub__(self, o): return self._bin("-", o)
    def __rsub__(self, o): return self._bin("-", o, True)
    def __mul__(self, o): return self._bin("*", o)
    def __rmul__(self, o): return self._bin("*", o, True)
    def __truediv__(self, o): return self._bin("/", o)
    def __rtruediv__(self, o): return self._bin("/", o, True)
    def __lt__(self, o): return self._bin("<", o)
    def __le__(self, o): return self._bin("<=", o)
    def __gt__(self, o): return self._bin(">", o)
    def __ge__(self, o): return self._bin(">=", o)
    def __neg__(self): return self.prog.unary("neg", self)
    def __abs__(self): return self.prog.unary("abs", self)
    def __pos__(self): return self

    def __bool__(self):
        raise NotElementwise(
            "the step tests an array or a coefficient in a Python `if`; the fast paths need the branch "
            "to depend only on options (or to be written with select/where)"
        )

    def __pow__(self, o):
        raise NotElementwise("** is not traced (pow is not correctly rounded on any backend)")

    __rpow__ = __pow__
    __hash__ = object.__hash__

    @property
    def shape(self):
        raise NotElementwise("the step inspects an array's shape, so it is not elementwise")

    @property
    def dtype(self):
        return self.prog.dtype_token


@dataclass
class Program:
    """A straight-line elementwise program: inputs, coefficients, nodes, outputs."""

    arrays: list[str] = field(default_factory=list)   # input array names, in kernel order
    scalars: list[str] = field(default_factory=list)  # coefficient names (doubles), in first-use order
    nodes: list[Node] = field(default_factory=list)
    outputs: list[tuple[str, Node]] = field(default_factory=list)
    dtype_token: object = field(default_factory=object)
    options: tuple = ()  # the non-numeric coefficients (flags, choices) the program was traced with
    step_tests: list = field(default_factory=list)  # (op, value, outcome) of every test on t

    def holds_at(self, t: int, options: tuple) -> bool:
        """Whether this program is the step at ``t`` for coefficients with these options."""
        return options == self.options and all(_COMPARE[op](t, v) == out for op, v, out in self.step_tests)

    def array(self, name: str) -> Node:
        self.arrays.append(name)
        return Node(self, "in", (), "array", name)

    def scalar(self, name: str) -> Node:
        return Node(self, "coef", (), "scalar", name)

    def operand(self, x: Any) -> Node:
        if isinstance(x, Node):
            if x.prog is not self:
                raise NotElementwise("operands from two traces")
            if x.op == "coef" and x.name not in self.scalars:
                self.scalars.append(x.name)
            return x
        if isinstance(x, StepCount):
            raise NotElementwise("the step count t enters array arithmetic; compute it in _scalars instead")
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise NotElementwise(f"cannot trace an operand of type {type(x).__name__}")
        return Node(self, "const", (float(x),), "scalar")

    def _emit(self, node: Node) -> Node:
        self.nodes.append(node)
        return node

    def binary(self, op: str, a: Node, b: Node) -> Node:
        self.operand(a), self.operand(b)
        if op in ("<", "<=", ">", ">="):
            kind = "bool"
        elif a.kind == "bool" or b.kind == "bool":
            raise NotElementwise("arithmetic on a boolean")
        else:
            kind = "array" if "array" in (a.kind, b.kind) else "scalar"
        return self._emit(Node(self, op, (a, b), kind))

    def unary(self, op: str, a: Node) -> Node:
        self.operand(a)
        return self._emit(Node(self, op, (a,), a.kind))

    def where(self, cond: Node, a: Any, b: Any) -> Node:
        a, b = self.operand(a), self.operand(b)
        if not isinstance(cond, Node) or cond.kind != "bool":
            raise NotElementwise("where() needs a traced condition")
        kind = "array" if "array" in (a.kind, b.kind) else "scalar"
        return self._emit(Node(self, "where", (cond, a, b), kind))

    # -- printing ----------------------------------------------------------------------
    def c_body(self) -> str:
        """The program as C statements over ``T`` (the element type) and ``double``.

        Names: inputs as given; coefficients as ``c_<name>``; outputs ``out_<name>``.  Every
        node is one statement, so a compiler that does not contract ``a*b + c`` evaluates
        the reference's operations one by one, rounding after each.
        """
        names: dict[int, str] = {}
        lines: list[str] = []

        def ref(n: Node, want: str) -> str:
            """``n`` as an expression of type ``want`` ("T", "double" or "bool")."""
            if n.op == "in":
                text = n.name
            elif n.op == "coef":
                text = "c_" + n.name
            elif n.op == "const":
                text = _c_double(n.args[0])
            else:
                text = names[id(n)]
            if want == "T" and n.kind == "scalar":
                return f"((T)({text}))"  # a weak scalar meets an array: rounded to T once
            return text

        for i, n in enumerate(self.nodes):
            var = f"n{i}"
            names[id(n)] = var
            ctype = {"array": "T", "scalar": "double", "bool": "bool"}[n.kind]
            want = "T" if n.kind == "array" else "double"
            if n.op in ("+", "-", "*", "/"):
                a, b = n.args
                expr = f"{ref(a, want)} {n.op} {ref(b, want)}"
            elif n.op in ("<", "<=", ">", ">="):
                a, b = n.args
                w = "T" if "array" in (a.kind, b.kind) else "double"
                expr = f"{ref(a, w)} {n.op} {ref(b, w)}"
            elif n.op == "neg":
                expr = f"-{ref(n.args[0], want)}"
            elif n.op == "abs":
                expr = f"fabs({ref(n.args[0], want)})"
            elif n.op in ("sqrt", "exp"):
                expr = f"{n.op}({ref(n.args[0], want)})"
            elif n.op == "sign":  # NumPy's sign: ±1, and x itself for ±0 and NaN
                x = ref(n.args[0], want)
                expr = f"({x} > 0 ? ({ctype})1 : ({x} < 0 ? ({ctype})-1 : {x}))"
            elif n.op in ("maximum", "minimum"):  # NaN-propagating, like NumPy's
                a, b = (ref(x, want) for x in n.args)
                cmp = ">=" if n.op == "maximum" else "<="
                expr = f"({a} != {a} ? {a} : ({b} != {b} ? {b} : ({a} {cmp} {b} ? {a} : {b})))"
            elif n.op == "where":
                cond, a, b = n.args
                expr = f"({names[id(cond)]} ? {ref(a, want)} : {ref(b, want)})"
            else:  # pragma: no cover - every op appended above is printed
                raise AssertionError(n.op)
            lines.append(f"const {ctype} {var} = {expr};")
        # every value first, then every write: an output may be the very array of an input
        # (a step in place), and no input may be read after its array has been written
        for name, n in self.outputs:
            lines.append(f"const T v_{name} = {ref(n, 'T')};")
        for name, _ in self.outputs:
            lines.append(f"out_{name} = v_{name};")
        return "\n".join(lines)


def _c_double(x: float) -> str:
    if math.isnan(x):
        return "(0.0/0.0)"
    if math.isinf(x):
        return "(1.0/0.0)" if x > 0 else "(-1.0/0.0)"
    return repr(float(x))  # repr round-trips: the C compiler reads back the same double


class _Namespace:
    """The subset of the array API an elementwise step may use, recording nodes."""

    def __init__(self, prog: Program):
        self._prog = prog

    def _u(self, op, x):
        return self._prog.unary(op, self._prog.operand(x))

    def sqrt(self, x): return self._u("sqrt", x)
    def exp(self, x): return self._u("exp", x)
    def abs(self, x): return self._u("abs", x)
    def sign(self, x): return self._u("sign", x)

    def maximum(self, a, b):
        return self._prog.binary("maximum", self._prog.operand(a), self._prog.operand(b))

    def minimum(self, a, b):
        return self._prog.binary("minimum", self._prog.operand(a), self._prog.operand(b))

    def where(self, cond, a, b):
        return self._prog.where(cond, a, b)

    def zeros_like(self, x, **_):
        return self._prog.operand(0.0)  # a constant, broadcast like a weak scalar

    def ones_like(self, x, **_):
        return self._prog.operand(1.0)

    def asarray(self, x, copy=None, **_):
        return self._prog.operand(x)  # a copy is the same values

    def astype(self, x, dtype, **_):
        if dtype is not self._prog.dtype_token:
            raise NotElementwise("astype to another dtype")
        return x

    def __getattr__(self, name):
        raise NotElementwise(f"xp.{name} is not an elementwise operation the tracer knows")


class _Coefficients:
    """``c`` for tracing: numbers become coefficient symbols, options stay Python values."""

    def __init__(self, prog: Program, values: dict[str, Any]):
        self._values = {}
        for k, v in values.items():
            if k == "t":
                v = StepCount(v, prog.step_tests)
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                v = prog.scalar(k)
            elif not isinstance(v, (bool, str, type(None), tuple)):
                raise NotElementwise(f"coefficient {k!r} is a {type(v).__name__}, not a Python scalar")
            self._values[k] = v

    def __getattr__(self, key):
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(key) from None


def trace_leaf(rule, t: int) -> Program:
    """The program of ``rule``'s step number ``t`` for one parameter array.

    Raises :class:`NotElementwise` when the rule pools over the whole tree (it overrides
    ``_prepare``), has batched hyper-parameters, or uses an operation the tracer does not know.
    """
    from ..rules._base import Rule

    if type(rule)._prepare is not Rule._prepare:
        raise NotElementwise(f"{rule.name} pools quantities over the whole parameter tree (_prepare)")
    if rule._batched():
        raise NotElementwise(
            f"{rule.name} has batched hyper-parameters ({', '.join(rule._batched())}); the fast paths take "
            f"scalar hyper-parameters (run a batch with rule.step)"
        )
    values = _coefficient_values(rule, t)
    prog = Program()
    prog.options = _options(values)
    p = prog.array("p")
    g = prog.array("g")
    slots = {name: prog.array("s_" + name) for name in rule.slots()}
    c = _Coefficients(prog, values)
    try:
        p_new, s_new, _ = rule._leaf(_Namespace(prog), p, g, slots, c)
    except NotElementwise:  # a TypeError itself: pass it on unwrapped
        raise
    except (AttributeError, TypeError) as exc:  # an operation outside the traced subset
        raise NotElementwise(f"{rule.name}: {exc}") from exc
    prog.outputs.append(("p", prog.operand(p_new)))
    for name in rule.slots():
        prog.outputs.append(("s_" + name, prog.operand(s_new[name])))
    return prog


def _coefficient_values(rule, t: int) -> dict[str, Any]:
    """Every coefficient of step ``t`` (hyper-parameters, constants, scalars) as Python values."""
    return dict(vars(rule._coefficients(_NoArray, t, rule._scalars(t), None, False)))


def _options(values: dict[str, Any]) -> tuple:
    return tuple((k, v) for k, v in values.items()
                 if k != "t" and (isinstance(v, bool) or not isinstance(v, (int, float))))


def options_of(rule, t: int) -> tuple:
    """The coefficients of step ``t`` that select code rather than enter arithmetic."""
    return _options(_coefficient_values(rule, t))


class ProgramCache:
    """The programs of one rule, reused at every step where they hold (see :meth:`Program.holds_at`)."""

    def __init__(self, rule):
        self.rule = rule
        self.programs: list[Program] = []

    def get(self, t: int, coefficients: Any = None) -> Program:
        """The program of step ``t``; ``coefficients``: that step's coefficients of one leaf
        when the caller has them (the options are read from them instead of computed again)."""
        options = options_of(self.rule, t) if coefficients is None else _options(dict(vars(coefficients)))
        for prog in self.programs:
            if prog.holds_at(t, options):
                return prog
        prog = trace_leaf(self.rule, t)
        self.programs.append(prog)
        return prog


class _NoArray:
    """Stands for the parameter array when coefficients are lifted: scalars stay Python numbers."""
