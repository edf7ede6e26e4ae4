"""What every update rule shares: hyper-parameter declarations, state, checks, the step driver.

A rule subclass declares its hyper-parameters in ``HYPER`` and writes the algorithm box in
three small methods:

``_scalars(t)``
    the per-step scalars that depend only on the step count and the hyper-parameters
    (bias corrections, rectification terms), computed on the host in float64 from Python
    floats -- or, for batched hyper-parameters, from float64 NumPy arrays;
``_prepare(xp, params, grads, slots, scalars, t)`` (optional)
    quantities pooled over the whole parameter tree (a clipping threshold, a global norm);
``_leaf(xp, p, g, s, c)``
    the update of one parameter array: ``p`` and ``g`` are arrays, ``s`` maps state slot
    names to arrays, ``c`` holds every hyper-parameter and scalar already lifted next to
    ``p`` (``c.tracing`` says whether a trace was asked for, so that quantities needed
    only by the trace are skipped in ``step``).  It returns the new parameters, the new
    slots and a dict of the traced array quantities in equation order; the driver adds
    ``t``, the scalars, and the new ``params`` last.

The driver in :class:`Rule` validates everything before any arithmetic, walks the tree,
assembles the new state and trace, and never writes into an input.
"""

from __future__ import annotations

import difflib
import math
import numbers
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Mapping, Sequence

from .. import _array, _tree

__all__ = ["Hyper", "Real", "Pair", "Choice", "Flag", "Int", "State", "Rule", "MAXIMIZE", "DECOUPLED_WEIGHT_DECAY", "apply_weight_decay", "is_zero", "select"]


#: ``Rule.step`` evaluates a NumPy parameter array of more elements than this in slices of this
#: many elements when the rule is elementwise (:meth:`Rule._leaf_in_slices`; bit-identical);
#: None: always on whole arrays.  2^16 float32 elements are 256 kB: a slice's temporaries stay
#: in one core's L2 cache.
SLICE: int | None = 1 << 16
#: threads that share the slices (None: the usable cores, at most 16)
SLICE_THREADS: int | None = None


# ---------------------------------------------------------------------------------------
# hyper-parameter declarations
# ---------------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    if x == math.inf:
        return "inf"
    if x == -math.inf:
        return "-inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x)) if abs(x) < 1e16 else repr(float(x))


@dataclass(frozen=True)
class Hyper:
    """Base declaration: a name, a default and a one-line meaning."""

    name: str
    default: Any
    doc: str

    batchable: ClassVar[bool] = False

    def validate(self, value: Any, rule: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def valid(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Real(Hyper):
    """A real hyper-parameter in an interval; may be an array for batched configurations."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = True
    batchable: ClassVar[bool] = True

    @property
    def valid(self) -> str:
        lo = "(" if self.low_open or self.low == -math.inf else "["
        hi = ")" if self.high_open or self.high == math.inf else "]"
        return f"{lo}{_fmt(self.low)}, {_fmt(self.high)}{hi}"

    def _inside(self, x):
        lo_ok = (x > self.low) if self.low_open else (x >= self.low)
        hi_ok = (x < self.high) if self.high_open else (x <= self.high)
        return lo_ok & hi_ok

    def validate(self, value: Any, rule: str) -> Any:
        where = f"{rule}: {self.name}"
        if _array.is_bool(value):
            raise TypeError(f"{where} must be a real number in {self.valid}; got the bool {value!r}")
        if isinstance(value, numbers.Real):
            x = float(value)  # NumPy scalars become Python floats: weak, never promote float32
            if not math.isfinite(x) and not (x == math.inf and self.high == math.inf and not self.high_open):
                raise ValueError(f"{where} must be a finite real number in {self.valid}; got {value!r}")
            if not self._inside(x):
                raise ValueError(f"{where} must be in {self.valid}; got {value!r}")
            return x
        if _array.is_array(value):
            arr = _array.host_float64(value, where)
            if arr.ndim == 0:
                return self.validate(float(arr), rule)
            idx = _array.first_violation(arr, self._inside(arr))
            if idx is not None:
                raise ValueError(
                    f"{where} must be in {self.valid} everywhere; got {float(arr[idx])!r} at index {idx} "
                    f"of the array of shape {arr.shape}"
                )
            arr.flags.writeable = False
            return arr
        raise TypeError(
            f"{where} must be a real number (or an array of them) in {self.valid}; got {type(value).__name__}"
        )


@dataclass(frozen=True)
class Pair(Hyper):
    """Two reals given together, like torch's ``betas``; each part is a :class:`Real`."""

    parts: tuple[Real, Real] = ()  # type: ignore[assignment]
    batchable: ClassVar[bool] = True

    @property
    def valid(self) -> str:
        return f"a pair ({self.parts[0].name} in {self.parts[0].valid}, {self.parts[1].name} in {self.parts[1].valid})"

    def validate(self, value: Any, rule: str) -> Any:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise TypeError(f"{rule}: {self.name} must be {self.valid}; got {value!r}")
        return tuple(part.validate(v, rule) for part, v in zip(self.parts, value))


@dataclass(frozen=True)
class Choice(Hyper):
    """One of a fixed set of strings (a numeric convention or a variant)."""

    choices: tuple[str, ...] = ()

    @property
    def valid(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)

    def validate(self, value: Any, rule: str) -> Any:
        if not isinstance(value, str) or value not in self.choices:
            hint = ""
            if isinstance(value, str):
                close = difflib.get_close_matches(value, self.choices, n=2)
                hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
            raise ValueError(f"{rule}: {self.name} must be {self.valid}; got {value!r}{hint}")
        return value


@dataclass(frozen=True)
class Flag(Hyper):
    """A bool option."""

    @property
    def valid(self) -> str:
        return "True or False"

    def validate(self, value: Any, rule: str) -> Any:
        if not _array.is_bool(value):
            raise TypeError(f"{rule}: {self.name} must be True or False; got {value!r}")
        return bool(value)


@dataclass(frozen=True)
class Int(Hyper):
    """A non-batchable integer option (for example the number of leading batch axes)."""

    low: int = 0
    high: int | None = None

    @property
    def valid(self) -> str:
        return f"an integer >= {self.low}" + (f" and <= {self.high}" if self.high is not None else "")

    def validate(self, value: Any, rule: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{rule}: {self.name} must be {self.valid}; got {value!r}")
        if value < self.low or (self.high is not None and value > self.high):
            raise ValueError(f"{rule}: {self.name} must be {self.valid}; got {value!r}")
        return int(value)


MAXIMIZE = Flag("maximize", False, "ascend instead of descend (negates g before weight decay)")
DECOUPLED_WEIGHT_DECAY = Flag(
    "decoupled_weight_decay",
    False,
    "θ <- θ(1 - γλ) before the step (Keras's weight_decay) instead of the coupled g + λθ (torch)",
)


def is_zero(x: Any) -> bool:
    """True when a numeric hyper-parameter is exactly 0 everywhere.

    Rules use it to skip a term that is a no-op (as torch does for ``weight_decay=0``), so
    that the default path has no extra rounding.
    """
    return x == 0 if _array.is_scalar(x) else not bool(x.any())


def apply_weight_decay(p, g, c, decoupled: bool, active: bool):
    """(p, g) after weight decay: θ(1 - γλ) when decoupled, g + λθ (coupled L2) otherwise.

    A rule that offers decoupled decay puts ``decay = 1 - lr * weight_decay`` in its
    ``_constants`` (computed on the host, like torch's ``param.mul_(1 - lr * wd)``).
    """
    if not active:
        return p, g
    if decoupled:
        return p * c.decay, g
    return p, g + c.weight_decay * p


def select(xp: Any, cond: Any, a: Any, b: Any) -> Any:
    """``a`` where ``cond`` else ``b``: a Python ``if`` for a plain bool, ``xp.where`` for arrays.

    Rules use it where a paper branches on a scalar (RAdam's rectification test), so that the
    same line serves one configuration and a batch of them.  ``a`` and ``b`` may be
    zero-argument callables; with a plain bool only the chosen one is evaluated.
    """
    if _array.is_bool(cond):
        chosen = a if cond else b
        return chosen() if callable(chosen) else chosen
    a = a() if callable(a) else a
    b = b() if callable(b) else b
    return xp.where(cond, a, b)


# ---------------------------------------------------------------------------------------
# state
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    """An update rule's state: the step count and named slots shaped like the params.

    ``t`` counts completed steps (0 after ``init``); the next step uses ``t + 1``.  ``slots``
    maps each state field (``m``, ``v``, ...) to a tree with the params' structure.
    ``rule`` names the rule family that made it, so that a state cannot be fed to another
    rule by mistake.
    """

    rule: str
    t: int
    slots: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.slots[name]

    def __contains__(self, name: object) -> bool:
        return name in self.slots

    def __repr__(self) -> str:
        return f"State(rule={self.rule!r}, t={self.t}, slots={list(self.slots)})"


class _Bag:
    """Attribute access to the lifted hyper-parameters and scalars of one leaf."""

    def __init__(self, values: dict[str, Any]):
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return "Coefficients(" + ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items()) + ")"


# ---------------------------------------------------------------------------------------
# the rule
# ---------------------------------------------------------------------------------------


class Rule:
    """An update rule with frozen, validated hyper-parameters.

    ``init(params) -> State``; ``step(params, grads, state) -> (params, state)``;
    ``trace(params, grads, state) -> (params, state, trace)``.  All three are pure.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""  # rules of one family share a state layout (adam, adamw, amsgrad)
    title: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    HYPER: ClassVar[tuple[Hyper, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give each rule class the signature and docstring that ``help()`` and IDEs show: its
        hyper-parameters as keyword arguments with their defaults, and a docstring made of its
        title, citation, hyper-parameters (default, valid values, meaning) and the algorithm box
        of its module."""
        super().__init_subclass__(**kwargs)
        import inspect
        import sys
        import textwrap

        cls.__signature__ = inspect.Signature(
            [inspect.Parameter(h.name, inspect.Parameter.KEYWORD_ONLY, default=h.default) for h in cls.HYPER])
        if "__doc__" in vars(cls) and vars(cls)["__doc__"]:
            return  # a class that writes its own docstring keeps it
        lines = [f"{cls.title or cls.__name__}.", "", cls.citation, "", "Hyper-parameters (keyword arguments):", ""]
        for h in cls.HYPER:
            lines.append(f"{h.name} = {h.default!r}  ({h.valid})")
            lines += textwrap.wrap(h.doc, 88, initial_indent="    ", subsequent_indent="    ")
        box = getattr(sys.modules.get(cls.__module__), "__doc__", None)
        if box:
            lines += ["", "The algorithm (this module's box):", "", textwrap.dedent(box).strip()]
        lines += ["", f"refopt explain {cls.name} prints the equations and every quantity of a few steps;",
                  f"the machine-readable spec is specs/rules/{cls.name}.toml."]
        cls.__doc__ = "\n".join(lines)

    # -- construction -------------------------------------------------------------------

    def __init__(self, **hyper: Any):
        declared = {h.name: h for h in self.HYPER}
        unknown = [k for k in hyper if k not in declared]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(key, declared, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise TypeError(
                f"{self.name}: unknown hyper-parameter {key!r}{hint} (it takes {', '.join(declared)})"
            )
        values = {}
        for h in self.HYPER:
            values[h.name] = h.validate(hyper.get(h.name, h.default), self.name)
        self._hyper = MappingProxyType(values)
        self._validate()

    def _validate(self) -> None:
        """Checks that involve several hyper-parameters (override; raise ValueError)."""

    @property
    def hyper(self) -> Mapping[str, Any]:
        """The validated hyper-parameters (read-only)."""
        return self._hyper

    def __getattr__(self, key: str) -> Any:
        hyper = self.__dict__.get("_hyper")
        if hyper is not None and key in hyper:
            return hyper[key]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {key!r}")

    def replace(self, **changes: Any) -> "Rule":
        """A new rule of the same kind with some hyper-parameters changed (a schedule step)."""
        return type(self)(**{**dict(self._hyper), **changes})

    def __repr__(self) -> str:
        def show(v):
            if isinstance(v, _array.HostArray):
                return f"array(shape={v.shape})"
            if isinstance(v, tuple):
                return "(" + ", ".join(show(x) for x in v) + ")"
            return repr(v)

        return f"{self.name}(" + ", ".join(f"{k}={show(v)}" for k, v in self._hyper.items()) + ")"

    def _numeric_hyper(self) -> dict[str, Any]:
        """Numeric hyper-parameters by the names the equations use (betas -> beta1, beta2)."""
        out: dict[str, Any] = {}
        for h in self.HYPER:
            v = self._hyper[h.name]
            if isinstance(h, Pair):
                for part, x in zip(h.parts, v):
                    out[part.name] = x
            elif isinstance(h, Real):
                out[h.name] = v
        return out

    def _batched(self) -> dict[str, Any]:
        return {k: v for k, v in self._numeric_hyper().items() if isinstance(v, _array.HostArray)}

    # -- what a subclass writes -----------------------------------------------------------

    def slots(self) -> tuple[str, ...]:
        """Names of the state slots for this configuration."""
        return ()

    def _init_slot(self, xp: Any, name: str, p: Any) -> Any:
        return xp.zeros(p.shape, dtype=p.dtype, device=_array.device(p))

    def _slot_shape(self, name: str, p: Any) -> tuple:
        """The shape of slot ``name`` for the parameter ``p``: ``p``'s own unless a rule keeps
        reduced statistics (Adafactor's row and column moments, a per-array norm)."""
        return tuple(p.shape)

    def _constants(self) -> dict[str, Any]:
        """Untraced host scalars derived from hyper-parameters only (``1 - beta1``, ...).

        Arithmetic among hyper-parameters belongs here or in ``_scalars``, never in
        ``_leaf``: on the host it is done once in float64 and rounded once to the params'
        dtype, exactly as a Python float is, so a batched run equals separate runs.
        """
        return {}

    def _scalars(self, t: int) -> dict[str, Any]:
        """Traced per-step host scalars (bias corrections, ...), in equation order."""
        return {}

    def _prepare(self, xp, params, grads, slots, scalars, t):
        """Tree-level quantities: (shared trace entries, per-leaf extra coefficients)."""
        return {}, None

    def _leaf(self, xp, p, g, s, c):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- public API -----------------------------------------------------------------------

    def init(self, params: Any) -> State:
        """Zero state (or the rule's documented initial values) shaped like ``params``."""
        leaves, structure, paths = _tree.flatten(params, "params")
        xp = _array.namespace(*leaves, what="params")
        for p, path in zip(leaves, paths):
            self._check_float(xp, p, path)
        self._check_hyper_shapes(leaves, paths)
        slots = {
            name: _tree.unflatten(structure, [_array.as_array(self._init_slot(xp, name, p)) for p in leaves])
            for name in self.slots()
        }
        return State(self.family or self.name, 0, MappingProxyType(slots))

    def step(self, params: Any, grads: Any, state: State) -> tuple[Any, State]:
        """One update: ``(new_params, new_state)``. Nothing passed in is modified.

        NumPy arrays larger than ``refopt.rules._base.SLICE`` elements are stepped slice by slice
        when the rule is elementwise -- the same operations on the same elements, so the same
        bits -- to keep the temporaries in cache (:meth:`_leaf_in_slices`).
        """
        new_params, new_state, _ = self._run(params, grads, state, tracing=False)
        return new_params, new_state

    def trace(self, params: Any, grads: Any, state: State) -> tuple[Any, State, dict[str, Any]]:
        """One update plus every intermediate quantity, named as in the spec, in equation order.

        Array quantities are trees shaped like ``params``; per-step scalars (``t``, bias
        corrections, ...) are Python floats, or float64 NumPy arrays when the
        hyper-parameters they come from are batched.
        """
        return self._run(params, grads, state)

    # -- the driver -----------------------------------------------------------------------

    @staticmethod
    def _check_float(xp, x, path):
        # float32 or float64 only: in half precision ε (1e-8, 1e-16) underflows to 0 and the rules'
        # documented behaviour (and the golden vectors) do not hold
        if not _array.is_real_floating(xp, x.dtype) or x.dtype not in (xp.float32, xp.float64):
            raise TypeError(
                f"{path} has dtype {_array.dtype_name(x.dtype)}; update rules need real floating "
                f"arrays of float32 or float64 (convert half-precision arrays with astype)"
            )

    def _check_hyper_shapes(self, leaves, paths):
        for name, arr in self._batched().items():
            for p, path in zip(leaves, paths):
                shape = _array.broadcast_shapes(arr.shape, tuple(p.shape))
                if shape != tuple(p.shape):
                    raise ValueError(
                        f"{self.name}: {name} has shape {arr.shape}, which does not broadcast against "
                        f"{path} of shape {tuple(p.shape)} (a batched hyper-parameter must broadcast "
                        f"to each parameter array's shape without enlarging it)"
                    )

    def _check_inputs(self, params, grads, state):
        ps, structure, paths = _tree.flatten(params, "params")
        gs, gstructure, gpaths = _tree.flatten(grads, "grads")
        if gstructure != structure:
            raise ValueError(
                f"grads must have the structure of params: params is {_tree.describe(structure)}, "
                f"grads is {_tree.describe(gstructure)}"
            )
        xp = _array.namespace(*ps, *gs, what="params and grads")
        for p, g, path, gpath in zip(ps, gs, paths, gpaths):
            self._check_float(xp, p, path)
            self._check_float(xp, g, gpath)
            if tuple(g.shape) != tuple(p.shape):
                raise ValueError(f"{gpath} has shape {tuple(g.shape)} but {path} has shape {tuple(p.shape)}")
            if g.dtype != p.dtype:
                raise TypeError(
                    f"{gpath} has dtype {_array.dtype_name(g.dtype)} but {path} has dtype "
                    f"{_array.dtype_name(p.dtype)}; convert one so that they match"
                )
            if _array.device(g) != _array.device(p):
                raise ValueError(f"{gpath} is on device {_array.device(g)} but {path} is on {_array.device(p)}")
        self._check_hyper_shapes(ps, paths)

        if not isinstance(state, State):
            raise TypeError(f"state must be the State that {self.name}.init() or .step() returned; got {type(state).__name__}")
        family = self.family or self.name
        if state.rule != family:
            raise ValueError(f"state was made by the rule {state.rule!r}; {self.name} needs a state of {family!r} (call {self.name}.init(params))")
        want = self.slots()
        if tuple(state.slots) != want:
            raise ValueError(
                f"state has slots {list(state.slots)} but {self!r} needs {list(want)}; "
                f"it was made with other options (call .init(params) for this configuration)"
            )
        if not isinstance(state.t, int) or isinstance(state.t, bool) or state.t < 0:
            raise ValueError(f"state.t must be a non-negative int; got {state.t!r}")
        slot_leaves = []
        for name in want:
            leaves, sstructure, _ = _tree.flatten(state.slots[name], f"state[{name!r}]")
            if sstructure != structure:
                raise ValueError(
                    f"state[{name!r}] has structure {_tree.describe(sstructure)} but params is "
                    f"{_tree.describe(structure)}"
                )
            for s, p, path in zip(leaves, ps, paths):
                want_shape = self._slot_shape(name, p)
                if tuple(s.shape) != want_shape or s.dtype != p.dtype:
                    needs = "" if want_shape == tuple(p.shape) else f" (this slot needs shape {want_shape})"
                    raise ValueError(
                        f"state[{name!r}] for {path} has shape {tuple(s.shape)} and dtype "
                        f"{_array.dtype_name(s.dtype)}, but the parameter has shape {tuple(p.shape)} and "
                        f"dtype {_array.dtype_name(p.dtype)}{needs}"
                    )
            slot_leaves.append(leaves)
        per_leaf = [dict(zip(want, column)) for column in zip(*slot_leaves)] if want else [{} for _ in ps]
        return xp, ps, gs, per_leaf, structure

    def _coefficients(self, p, t, scalars, extra, tracing):
        values: dict[str, Any] = {"t": t, "tracing": tracing}
        for h in self.HYPER:
            if not isinstance(h, (Real, Pair)):
                values[h.name] = self._hyper[h.name]
        for k, v in self._numeric_hyper().items():
            values[k] = _array.lift(v, p)
        for k, v in {**self._constants(), **scalars}.items():
            values[k] = _array.lift(v, p)
        if extra:
            values.update(extra)
        return _Bag(values)

    def _elementwise(self) -> bool:
        """Whether every output element of ``_leaf`` depends only on the same element of its
        inputs: the rule's box traced on symbols (:func:`refopt.fast.supports`), once per rule."""
        known = self.__dict__.get("_is_elementwise")
        if known is None:
            from ..fast import supports  # the tracer imports this module

            known = supports(self)[0]
            self.__dict__["_is_elementwise"] = known
        return known

    def _leaf_in_slices(self, xp, p, g, s, c):
        """``_leaf`` on consecutive slices of ``SLICE`` elements, written into new outputs.

        Only for elementwise rules (:meth:`_elementwise`) with scalar coefficients: each output
        element is computed from the same element of the inputs by the same operations as on
        the whole array, so the result is the same, bit for bit.  What changes is memory: the
        temporaries of a slice (one per term of the box) stay in the cache and are recycled by
        the allocator, instead of each being a fresh array as large as the parameter -- 40 MB
        for 10^7 float32 parameters, which the allocator maps and the kernel zeroes anew at
        every term, so that the step's time swung with the allocator's state.  The outputs are
        cut from memory that earlier outputs no longer use (:func:`refopt.fast._numpy.recycled_empty`),
        which saves faulting in fresh pages.  The slices are shared among ``SLICE_THREADS``
        threads; which thread computes a slice changes no bit.
        """
        from ..fast._numpy import default_threads, recycled_empty, run_in_shares

        n = math.prod(p.shape)
        flat = [xp.reshape(a, (n,)) for a in (p, g, *s.values())]
        out = recycled_empty(n, p.dtype, 1 + len(s))  # memory earlier outputs no longer use

        def run(start, stop):
            for lo in range(start, stop, SLICE):
                hi = min(stop, lo + SLICE)
                part_p, part_s, _ = self._leaf(xp, flat[0][lo:hi], flat[1][lo:hi],
                                               {k: a[lo:hi] for k, a in zip(s, flat[2:])}, c)
                for target, value in zip(out, (part_p, *(part_s[k] for k in s))):
                    target[lo:hi] = value

        # contiguous shares of the slices on the usable cores (the array library releases the GIL
        # inside each operation; the slices write disjoint parts of the outputs)
        run_in_shares(run, n, SLICE, default_threads() if SLICE_THREADS is None else SLICE_THREADS)
        shaped = [xp.reshape(a, tuple(p.shape)) for a in out]
        return shaped[0], dict(zip(s, shaped[1:])), {}

    def _run(self, params, grads, state, tracing=True):
        xp, ps, gs, slots, structure = self._check_inputs(params, grads, state)
        t = state.t + 1
        scalars = self._scalars(t)
        shared, extras = self._prepare(xp, ps, gs, slots, scalars, t)
        new_p, new_s, traces = [], [], []
        sliced = not tracing and SLICE is not None and _array.backend_name(xp) == "numpy"
        for i, (p, g, s) in enumerate(zip(ps, gs, slots)):
            c = self._coefficients(p, t, scalars, extras[i] if extras is not None else None, tracing)
            if sliced and math.prod(p.shape) > SLICE and self._elementwise() and all(
                    tuple(a.shape) == tuple(p.shape) for a in s.values()):
                p_new, s_new, tr = self._leaf_in_slices(xp, p, g, s, c)
            else:
                p_new, s_new, tr = self._leaf(xp, p, g, s, c)
            if p.ndim == 0:  # NumPy computes on 0-D arrays into NumPy scalars: keep them arrays
                p_new = _array.as_array(p_new)
                s_new = {k: _array.as_array(v) for k, v in s_new.items()}
                tr = {k: _array.as_array(v) for k, v in tr.items()}
            new_p.append(p_new)
            new_s.append(s_new)
            traces.append(tr)
        names = self.slots()
        new_state = State(
            state.rule,
            t,
            MappingProxyType({k: _tree.unflatten(structure, [s[k] for s in new_s]) for k in names}),
        )
        new_params = _tree.unflatten(structure, new_p)
        if not tracing:
            return new_params, new_state, None
        trace: dict[str, Any] = {"t": t}
        trace.update(scalars)
        trace.update(shared)
        for key in traces[0]:
            trace[key] = _tree.unflatten(structure, [tr[key] for tr in traces])
        trace["params"] = new_params
        return new_params, new_state, trace


def hyper_table(rule_cls: type[Rule]) -> list[tuple[str, Any, str, str]]:
    """(name, default, valid range, meaning) rows of a rule's hyper-parameters."""
    return [(h.name, h.default, h.valid, h.doc) for h in rule_cls.HYPER]


def suggest(name: str, known: Sequence[str], what: str) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    return f"unknown {what} {name!r}{hint} (known: {', '.join(sorted(known))})"
