"""Fast paths: the same update rules, evaluated in fewer passes over memory.

The reference (``rule.step``) is written for reading: one array-API operation per term of the
paper's box, each a full pass over the parameters.  A fast path computes the same step with
about the traffic the step needs, and is opt-in::

    import refopt as ro
    rule = ro.rules.adam(lr=1e-3)
    fast = ro.fast.fused(rule)                 # same init / step as the rule
    state = fast.init(params)
    params, state = fast.step(params, grads, state)
    params, state = fast.step(params, grads, state, out=(params, state))  # in place: the fastest

Loops that refopt owns -- ``refopt.run`` and ``refopt.problems.train`` -- take the fast path by
default where it applies and pays (:func:`for_loop`), with ``fast=False`` to force the reference.

Every path starts from the same place: the rule's own ``_leaf`` run once on symbols
(:mod:`refopt.fast._trace`), which records the algorithm box as a straight-line elementwise
program in the reference's order of operations.  The program is then run

on NumPy arrays, ``engine="numpy"`` (default)
    operation by operation with NumPy on cache-sized blocks, spread over threads
    (:mod:`refopt.fast._numpy`);
on NumPy arrays, ``engine="numba"``
    as one parallel loop compiled by Numba (:mod:`refopt.fast._numba`; the ``numba`` extra).
    Where the box has an ``exp`` (diffGrad), a float32 loop calls NumPy's own float32 ``exp``
    algorithm written out for Numba (:mod:`refopt.fast._expf`) when NumPy runs that kernel
    here (AVX2 or AVX-512 on x86-64), and otherwise the program is cut into two loops with
    ``np.exp`` between them (always in float64, whose NumPy ``exp`` is SVML's or libm's);
on CuPy arrays
    as one fused CUDA kernel per parameter array (:mod:`refopt.fast._cupy`); ``fma=False``
    (the default) compiles it without multiply-add contraction.

The CPU engines give ``rule.step``'s result bit for bit; the CUDA kernel with ``fma=False``
does for ``+ - * / sqrt`` and is within CUDA's 2 ulp for ``exp`` (diffGrad).  They take the
rules whose step is elementwise -- sgd, adam, adamw, amsgrad, radam, adabelief, diffgrad,
rmsprop, adagrad, adadelta, lion, signsgd, adabound, amsbound, yogi, adamax, nadam, msvag -- with scalar hyper-parameters and every option;
:func:`supports` says why a rule is refused (a rule that pools over the whole tree, such as
clipping's top-fraction threshold, a rule with per-array reductions, such as Fromage's norms and
Adafactor's row and column statistics, or a batched configuration).  Other array libraries get a
clear error: run them with ``rule.step``.

Each path is checked against the reference and the golden vectors in ``tests/test_fast.py``.
"""

from __future__ import annotations

import math
import numbers
import threading
from types import MappingProxyType
from typing import Any

from .. import _array, _tree
from ..rules._base import Rule, State
from ._trace import NotElementwise, ProgramCache, trace_leaf

__all__ = ["FusedRule", "fused", "supports", "for_loop", "NotElementwise", "AUTO_MIN_ELEMENTS"]

_BACKENDS = ("numpy", "cupy")


def supports(rule: Rule) -> tuple[bool, str]:
    """(True, "") when ``rule`` has a fast path; otherwise (False, the reason)."""
    if not isinstance(rule, Rule):
        return False, f"not an update rule: {type(rule).__name__}"
    try:
        trace_leaf(rule, 1)
        trace_leaf(rule, 2)
    except NotElementwise as exc:
        return False, str(exc)
    return True, ""


class FusedRule:
    """A rule's fast evaluation: ``init`` and ``step`` as the rule's, nothing else.

    ``engine`` (NumPy arrays): ``"numpy"`` evaluates the traced step with NumPy on cache-sized
    blocks over ``threads`` threads -- no dependency; ``"numba"`` compiles it into parallel
    loops (the ``numba`` extra) -- about the minimum memory traffic.  Both give the reference's
    bits.
    CuPy arrays always run the fused CUDA kernel.
    ``fma``: let the CUDA compiler contract ``a*b + c`` (CuPy only; the CPU engines never do).
    ``block``: elements per block of the ``"numpy"`` engine (default 65,536: a block's
    temporaries stay in one core's L2 cache); ``threads``: CPU threads (default: the usable
    cores).  Neither changes a bit of the result.
    """

    ENGINES = ("numpy", "numba")

    def __init__(self, rule: Rule, *, engine: str = "numpy", fma: bool = False, block: int = 1 << 16,
                 threads: int | None = None):
        ok, why = supports(rule)
        if not ok:
            raise ValueError(f"refopt.fast: no fast path for {rule!r}: {why}")
        if engine not in self.ENGINES:
            raise ValueError(f"engine must be one of {', '.join(map(repr, self.ENGINES))}; got {engine!r}")
        if not isinstance(fma, bool):
            raise TypeError(f"fma must be True or False; got {fma!r}")
        if isinstance(block, bool) or not isinstance(block, numbers.Integral) or block < 1024:
            raise ValueError(f"block must be an int of at least 1024 elements; got {block!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1):
            raise ValueError(f"threads must be None (all usable cores) or an int >= 1; got {threads!r}")
        if engine == "numba":
            from . import _numba

            _numba._numba()  # the install hint now, not at the first step
        self.rule = rule
        self._programs = ProgramCache(rule)
        self._local = threading.local()
        self.engine = engine
        self.fma = fma
        self.block = int(block)
        self.threads = threads

    def __repr__(self) -> str:
        return f"fused({self.rule!r}, engine={self.engine!r}, fma={self.fma})"

    def init(self, params: Any) -> State:
        """The rule's initial state (the same State object type, usable by either path)."""
        return self.rule.init(params)

    def step(self, params: Any, grads: Any, state: State, *, out: tuple[Any, State] | None = None) -> tuple[Any, State]:
        """One update, as ``rule.step``; nothing passed in is modified.

        ``out``: optionally, a ``(params, state)`` pair whose arrays receive the new values (and
        are returned) instead of fresh arrays.  Either ``(params, state)`` themselves -- the step
        in place, as ``torch.optim`` steps: the fastest, since every array is read and written
        back once -- or the arrays of an earlier step that the caller no longer needs (two
        alternating sets of buffers).  Each array must be the very array it replaces or share no
        memory with any input; the gradients are never written.  The result is the same bits
        either way.
        """
        rule = self.rule
        xp, ps, gs, slots, structure = rule._check_inputs(params, grads, state)
        backend = _array.backend_name(xp)
        if backend not in _BACKENDS:
            raise TypeError(
                f"refopt.fast runs on NumPy and CuPy arrays; got {backend} arrays (use rule.step, which runs on "
                f"any array-API library)"
            )
        targets = None if out is None else self._targets(out, ps, gs, slots, structure, backend)
        t = state.t + 1
        scalars = rule._scalars(t)
        coefficients = [rule._coefficients(p, t, scalars, None, False) for p in ps]
        program = self._programs.get(t, coefficients[0] if coefficients else None)
        if backend == "numpy" and self.engine == "numba":
            from . import _numba

            scratch = self._local.__dict__.setdefault("scratch", {})  # temporaries between loops, per thread
            new_p, new_s = _numba.step(rule, program, ps, gs, slots, coefficients, threads=self.threads,
                                       targets=targets, scratch=scratch)
        elif backend == "numpy":
            from . import _numpy

            threads = self.threads if self.threads is not None else _numpy.default_threads()
            new_p, new_s = _numpy.step(rule, program, ps, gs, slots, coefficients, block=self.block,
                                       threads=threads, targets=targets)
        else:
            from . import _cupy

            new_p, new_s = _cupy.step(rule, program, ps, gs, slots, coefficients, fma=self.fma, targets=targets)
        names = rule.slots()
        new_state = State(
            state.rule, t, MappingProxyType({k: _tree.unflatten(structure, [s[k] for s in new_s]) for k in names})
        )
        return _tree.unflatten(structure, new_p), new_state

    def _targets(self, out, ps, gs, slots, structure, backend):
        """Per leaf, the arrays of ``out`` to write into: ``{"p": ..., "s_<slot>": ...}``."""
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], State)):
            raise TypeError("out must be a (params, state) pair: the inputs themselves (in place) or the result of an "
                            "earlier step of this rule")
        out_params, out_state = out
        leaves, out_structure, paths = _tree.flatten(out_params, "out params")
        if out_structure != structure:
            raise ValueError(f"out params have structure {_tree.describe(out_structure)}, params {_tree.describe(structure)}")
        names = self.rule.slots()
        if tuple(out_state.slots) != names:
            raise ValueError(f"out state has slots {list(out_state.slots)}; {self.rule.name} needs {list(names)}")
        columns = {"p": leaves}
        for k in names:
            columns["s_" + k] = _tree.flatten(out_state.slots[k], f"out state[{k!r}]")[0]
        inputs = [*ps, *gs, *(a for s in slots for a in s.values())]
        targets = []
        for i, p in enumerate(ps):
            own = {"p": p, **{"s_" + k: slots[i][k] for k in names}}  # what each output replaces
            leaf = {}
            for key, column in columns.items():
                a = column[i]
                where = f"out {key} for {paths[i]}"
                if _array.backend_name(_array.namespace(a)) != backend or tuple(a.shape) != tuple(p.shape) or a.dtype != p.dtype:
                    raise ValueError(f"{where} must be a {backend} array of shape {tuple(p.shape)} and dtype "
                                     f"{_array.dtype_name(p.dtype)}")
                if not _array.writable_contiguous(a):
                    raise ValueError(f"{where} must be writeable and C-contiguous")
                in_place = a is own[key]
                others = list(inputs)
                if in_place:  # its own input, once: the same array passed twice (p as g) still conflicts
                    del others[next(j for j, b in enumerate(others) if b is a)]
                if any(_array.may_share_memory(a, b) for b in others) or any(
                    _array.may_share_memory(a, b) for t in targets for b in t.values()
                ) or any(_array.may_share_memory(a, b) for b in leaf.values()):
                    raise ValueError(f"{where} shares memory with an input or another output; pass the array it "
                                     f"replaces (in place) or buffers from an earlier step that are no longer in use")
                leaf[key] = a
            targets.append(leaf)
        return targets


def fused(rule: Rule, *, engine: str = "numpy", fma: bool = False, block: int = 1 << 16,
          threads: int | None = None) -> FusedRule:
    """The fast evaluation of ``rule`` (see :class:`FusedRule`); raises ValueError when there is none."""
    return FusedRule(rule, engine=engine, fma=fma, block=block, threads=threads)


#: parameters (elements over all arrays) from which a loop that refopt owns takes the fast path
#: by default.  Below it the NumPy engine's fixed cost (checks, thread hand-off, in-place copies)
#: outweighs what it saves over the reference, which steps large arrays in slices on recycled
#: memory.  Measured on the 2-core CI machine, float32, NumPy engine in place against
#: ``rule.step``, ratio of the medians: 2^15 elements 0.67x (Adam) and 0.71x (diffGrad), 2^16
#: 0.84-1.95x (noisy), 2^17 1.10x and 1.21x, 2^20 1.34x and 1.35x.
AUTO_MIN_ELEMENTS = 1 << 17


def for_loop(rule: Any, params: Any, fast: bool | str | None = None, *, what: str = "fast") -> FusedRule | None:
    """The fast evaluation a loop that refopt owns (``refopt.run``, ``problems.train``) steps
    ``rule`` with, or None for ``rule.step``; both give the same bits.

    ``fast``: None (default) -- the fast path when ``rule`` has one (:func:`supports`), the
    arrays are NumPy or CuPy and there are at least ``AUTO_MIN_ELEMENTS`` of them; True -- the
    fast path, or a ValueError saying why there is none; False -- the reference; ``"numpy"`` or
    ``"numba"`` -- the fast path on that engine.  None and True take the NumPy engine: it needs no
    import and no compilation, whereas Numba's first use in a process costs about 0.6 s (import,
    and compilation or loading from the disk cache) -- more than its gain over the NumPy engine in
    a typical run (10^6 parameters, 20 Adam steps: reference 0.25 s, NumPy engine 0.18 s, Numba
    0.12 s once warm).  Ask for ``"numba"`` for long runs.  ``what`` names the argument in errors.
    """
    if fast is False:
        return None
    if not (fast is None or fast is True or fast in FusedRule.ENGINES):
        raise ValueError(f"{what} must be None (automatic), True, False, 'numpy' or 'numba'; got {fast!r}")
    leaves = _tree.flatten(params, "params")[0]
    backend = _array.backend_name(_array.namespace(*leaves))
    ok, why = supports(rule)
    if ok and backend not in _BACKENDS:
        ok, why = False, f"it runs on NumPy and CuPy arrays, not {backend}"
    if fast is None:
        if not ok or sum(math.prod(a.shape) for a in leaves) < AUTO_MIN_ELEMENTS:
            return None
    elif not ok:
        raise ValueError(f"{what}={fast!r}: no fast path for {rule!r}: {why}")
    return FusedRule(rule, engine=fast if isinstance(fast, str) else "numpy")
