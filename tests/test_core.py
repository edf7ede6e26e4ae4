"""What every update rule promises, checked for every name in ``refopt.rules.names()``.

dtype and device are kept on every backend; ``init``/``step``/``trace`` never write into an
input; parameters may be any dict/list/tuple tree; bad input is refused before any work with
an error that names the argument and the value; ``trace`` agrees bit for bit with ``step``.

Each rule runs with its defaults and with *variants* derived from its declaration: every
Flag flipped, every other Choice value, and every numeric hyper-parameter whose default is 0
switched on.  A rule whose module is not written yet is skipped with the reason.
"""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest

import refopt as ro
from _variants import rule_cls, variants
from refopt import _tree as tree
from refopt.rules._base import Choice, Flag, Int, Pair, Real, Rule, State

RULES = ro.rules.names()
STEPS = 6  # past RAdam's warm-up with the "rho>4" threshold (adaptive from t = 5)


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def hypers(cls) -> dict:
    return {h.name: h for h in cls.HYPER}


def reals(cls) -> dict:
    """Every Real by the name a user passes (Pair parts under the Pair's name and index)."""
    out = {}
    for h in cls.HYPER:
        if isinstance(h, Real):
            out[h.name] = h
    return out


def np_tree(seed: int, shapes, scale: float = 1.0):
    """A NumPy tree of the same structure as ``shapes`` (a tree of shape tuples)."""
    rng = np.random.default_rng(seed)

    def build(node):
        if isinstance(node, dict):
            return {k: build(v) for k, v in node.items()}
        if isinstance(node, list) and not all(isinstance(x, int) for x in node):
            return [build(v) for v in node]
        if isinstance(node, tuple) and all(isinstance(x, int) for x in node):
            return scale * rng.standard_normal(node)
        if isinstance(node, tuple):
            return tuple(build(v) for v in node)
        raise AssertionError(node)

    return build(shapes)


SHAPES = {"w": (3, 4), "b": (4,)}


def run(rule, backend, shapes=SHAPES, dtype=np.float64, steps=3, seed=0, freeze=False, tracing=False):
    """Params, state and (last) trace after ``steps`` steps on fixed random gradients."""
    p = backend.tree(np_tree(seed, shapes), dtype)
    state = rule.init(p)
    trace = None
    for k in range(steps):
        g = backend.tree(np_tree(seed + 100 + k, shapes), dtype)
        if freeze:
            backend.freeze(p), backend.freeze(g), backend.freeze(dict(state.slots)) if state.slots else None
        if tracing:
            p, state, trace = rule.trace(p, g, state)
        else:
            p, state = rule.step(p, g, state)
    return p, state, trace


def leaves(t):
    return tree.flatten(t, "tree")[0]


def assert_tree_equal(a, b, what=""):
    la, sa, _ = tree.flatten(a, "a")
    lb, sb, _ = tree.flatten(b, "b")
    assert sa == sb, what
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(ro._array.to_numpy(x), ro._array.to_numpy(y), err_msg=what)


def is_python_scalar(x) -> bool:
    return isinstance(x, (bool, int, float))


# ---------------------------------------------------------------------------------------
# every rule is importable and declared
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RULES)
def test_rule_declaration(name):
    cls = rule_cls(name)
    assert cls.name == name
    assert cls.title and cls.citation and cls.family
    assert cls.__doc__ is None or isinstance(cls.__doc__, str)
    assert len({h.name for h in cls.HYPER}) == len(cls.HYPER)
    rule = cls()
    assert set(rule.hyper) == {h.name for h in cls.HYPER}
    assert repr(rule).startswith(name + "(")
    assert ro.rules.get(name).hyper == rule.hyper
    assert isinstance(rule.slots(), tuple)


# ---------------------------------------------------------------------------------------
# dtype and device
# ---------------------------------------------------------------------------------------


def check_dtypes(rule, backend, dtype, label):
    p0 = backend.tree(np_tree(0, SHAPES), dtype)
    want = leaves(p0)[0].dtype
    assert ro._array.dtype_name(want) == np.dtype(dtype).name, f"{backend.name} made {want} from {dtype}"
    dev = ro._array.device(leaves(p0)[0])
    p, state, trace = run(rule, backend, dtype=dtype, steps=STEPS, tracing=True)
    where = f"{rule!r} [{label}] on {backend.name}"
    assert state.t == STEPS
    for what, t in [("params", p), *((f"state[{k!r}]", v) for k, v in state.slots.items())]:
        for leaf in leaves(t):
            assert leaf.dtype == want, f"{where}: {what} has dtype {leaf.dtype}, want {want}"
            assert ro._array.device(leaf) == dev, f"{where}: {what} moved to {ro._array.device(leaf)}"
    for key, value in trace.items():
        if is_python_scalar(value):
            continue
        for leaf in leaves(value):
            if ro._array.is_array(leaf) and backend.xp.isdtype(leaf.dtype, "bool"):
                continue
            assert ro._array.is_array(leaf), f"{where}: trace[{key!r}] holds {type(leaf).__name__}"
            assert leaf.dtype == want, f"{where}: trace[{key!r}] has dtype {leaf.dtype}, want {want}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", RULES)
def test_dtype_and_device_kept(name, dtype, backend):
    cls = rule_cls(name)
    # every variant on NumPy, torch and array_api_strict's float32-default device; defaults elsewhere
    full = backend.name in ("numpy", "strict_device2", "torch")
    for label, kw in variants(cls) if full else [("default", {})]:
        check_dtypes(cls(**kw), backend, dtype, label)


# ---------------------------------------------------------------------------------------
# purity
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RULES)
def test_readonly_inputs_are_enough(name):
    """On read-only NumPy arrays (params, grads and every state slot) nothing raises."""
    from conftest import BACKENDS

    ro_backend = next(b for b in BACKENDS if b.name == "numpy_readonly")
    cls = rule_cls(name)
    for label, kw in variants(cls):
        rule = cls(**kw)
        p, state, _ = run(rule, ro_backend, steps=3, freeze=True)
        p, state, _ = run(rule, ro_backend, steps=3, freeze=True, tracing=True)
        assert state.t == 3


@pytest.mark.parametrize("name", RULES)
def test_inputs_unchanged(name, numpy_backend):
    cls = rule_cls(name)
    for label, kw in variants(cls):
        rule = cls(**kw)
        p, state, _ = run(rule, numpy_backend, steps=2)
        g = numpy_backend.tree(np_tree(7, SHAPES))
        before = copy.deepcopy((p, g, dict(state.slots)))
        rule.step(p, g, state)
        rule.trace(p, g, state)
        assert state.t == 2
        assert_tree_equal(p, before[0], f"{rule!r} [{label}] changed params")
        assert_tree_equal(g, before[1], f"{rule!r} [{label}] changed grads")
        for k in state.slots:
            assert_tree_equal(state.slots[k], before[2][k], f"{rule!r} [{label}] changed state[{k!r}]")


# ---------------------------------------------------------------------------------------
# trees
# ---------------------------------------------------------------------------------------

TREES = {
    "array": (5,),
    "dict": {"w": (2, 3), "b": (3,)},
    "list": [(2, 3), (3,)],
    "tuple": ((2, 3), (3,)),
    "nested": {"layer": [(2, 3), (3,)], "head": {"w": (3, 2)}},
}


def pools_over_tree(rule) -> bool:
    """Rules that compute a tree-level quantity (a clipping threshold, a global norm).

    A rule may use ``_prepare`` for per-array quantities only (normalized_sgd's
    ``norm="per_tensor"``); it is elementwise across the tree then.
    """
    if type(rule)._prepare is Rule._prepare:
        return False
    return rule.hyper.get("norm") != "per_tensor"


@pytest.mark.parametrize("kind", list(TREES))
@pytest.mark.parametrize("name", RULES)
def test_trees_keep_structure(name, kind, backend):
    cls = rule_cls(name)
    rule = cls()
    shapes = TREES[kind]
    p, state, trace = run(rule, backend, shapes=shapes, steps=2, tracing=True)
    want = tree.flatten(np_tree(0, shapes), "params")[1]
    assert tree.flatten(p, "params")[1] == want
    for k, v in state.slots.items():
        assert tree.flatten(v, k)[1] == want, k
    for k, v in trace.items():
        if not is_python_scalar(v) and k != "t" and not _shared(rule, k, v):
            assert tree.flatten(v, k)[1] == want, f"trace[{k!r}]"


def _shared(rule, key, value) -> bool:
    """Tree-level trace entries of pooled rules are single arrays, not trees."""
    return pools_over_tree(rule) and ro._array.is_array(value)


@pytest.mark.parametrize("name", RULES)
def test_tree_equals_leaves_run_separately(name, numpy_backend):
    """A nested tree gives the numbers of its leaves run one by one (elementwise rules), or of the
    flattened, concatenated vector (rules that pool over the tree)."""
    cls = rule_cls(name)
    if name == "clipped_adafactor":
        pytest.skip("its τ is pooled over the tree while RMS and the factored statistics are per array: neither "
                    "the leaves alone nor the flattened vector give its numbers (tests/test_baselines_factored.py)")
    shapes = TREES["nested"]
    for label, kw in variants(cls):
        rule = cls(**kw)
        p_tree, s_tree, _ = run(rule, numpy_backend, shapes=shapes, steps=3)
        got = [np.asarray(x) for x in leaves(p_tree)]
        p_leaves = leaves(np_tree(0, shapes))
        g_leaves = [leaves(np_tree(100 + k, shapes)) for k in range(3)]
        if not pools_over_tree(rule):
            for i, p in enumerate(p_leaves):
                state = rule.init(p)
                for k in range(3):
                    p, state = rule.step(p, g_leaves[k][i], state)
                np.testing.assert_array_equal(got[i], p, err_msg=f"{rule!r} [{label}] leaf {i}")
        else:
            flat = lambda ls: np.concatenate([x.reshape(-1) for x in ls])
            p = flat(p_leaves)
            state = rule.init(p)
            for k in range(3):
                p, state = rule.step(p, flat(g_leaves[k]), state)
            np.testing.assert_allclose(flat(got), p, rtol=1e-12, atol=1e-15, err_msg=f"{rule!r} [{label}]")


# ---------------------------------------------------------------------------------------
# trace == step
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RULES)
def test_trace_matches_step(name, backend):
    cls = rule_cls(name)
    full = backend.name in ("numpy", "torch")
    for label, kw in variants(cls) if full else [("default", {})]:
        rule = cls(**kw)
        p = backend.tree(np_tree(0, SHAPES))
        s1 = s2 = rule.init(p)
        p1 = p2 = p
        for k in range(4):
            g = backend.tree(np_tree(100 + k, SHAPES))
            p1, s1 = rule.step(p1, g, s1)
            p2, s2, tr = rule.trace(p2, g, s2)
            keys = list(tr)
            assert keys[0] == "t" and keys[-1] == "params", f"{rule!r} [{label}]: trace keys {keys}"
            assert tr["t"] == k + 1 == s1.t == s2.t
            assert tr["params"] is p2
            assert_tree_equal(p1, p2, f"{rule!r} [{label}] params at t={k + 1}")
            assert list(s1.slots) == list(s2.slots) == list(rule.slots())
            for key in s1.slots:
                assert_tree_equal(s1.slots[key], s2.slots[key], f"{rule!r} [{label}] state[{key!r}]")
                if key in tr:  # a traced slot is the new state
                    assert_tree_equal(tr[key], s2.slots[key], f"{rule!r} [{label}] trace[{key!r}]")


# ---------------------------------------------------------------------------------------
# bad input: refused at construction
# ---------------------------------------------------------------------------------------


def has(cls, name):
    return name in hypers(cls)


def rule_with(name, hyper):
    """The class of rule ``name``; skip when it does not declare ``hyper`` (known only once it imports)."""
    cls = rule_cls(name)
    if not has(cls, hyper):
        pytest.skip(f"{name} has no hyper-parameter {hyper!r}")
    return cls


def rules_with(name):
    """Rules (by name) declaring the hyper-parameter ``name``; rules not written yet stay in (skipped)."""
    out = []
    for r in RULES:
        try:
            cls = ro.rules.rule_class(r)
        except Exception:  # not written yet (skipped) or broken (reported by the test itself)
            out.append(r)
            continue
        if has(cls, name):
            out.append(r)
    return out


@pytest.mark.parametrize("name", rules_with("lr"))
def test_negative_lr(name):
    cls = rule_with(name, "lr")
    with pytest.raises(ValueError, match=rf"^{name}: lr must be in \[0, inf\); got -0\.1$"):
        cls(lr=-0.1)
    with pytest.raises(ValueError, match=r"lr must be a finite real number .*got nan"):
        cls(lr=math.nan)
    with pytest.raises(TypeError, match=r"lr must be a real number.*got the bool True"):
        cls(lr=True)
    with pytest.raises(TypeError, match=r"lr must be a real number.*got str"):
        cls(lr="0.1")
    with pytest.raises(ValueError, match=r"lr must be in \[0, inf\) everywhere; got (np\.float64\()?-1\.0\)? at index \(1, 0\)"):
        cls(lr=np.array([[0.1], [-1.0]]))


@pytest.mark.parametrize("name", rules_with("eps"))
def test_negative_eps(name):
    cls = rule_with(name, "eps")
    h = next(h for h in cls.HYPER if h.name == "eps")
    if isinstance(h, Pair):  # Adafactor's (ε1, ε2)
        with pytest.raises(ValueError, match=rf"^{name}: eps2 must be in \[0, inf\); got -1e-08$"):
            cls(eps=(h.default[0], -1e-8))
        return
    with pytest.raises(ValueError, match=rf"^{name}: eps must be in \[0, inf\); got -1e-08$"):
        cls(eps=-1e-8)


@pytest.mark.parametrize("name", rules_with("betas"))
@pytest.mark.parametrize("betas,bad", [((1.0, 0.999), "beta1 must be in \\[0, 1\\); got 1\\.0"),
                                       ((0.9, -0.5), "beta2 must be in \\[0, 1\\); got -0\\.5"),
                                       ((0.9, 1.5), "beta2 must be in \\[0, 1\\); got 1\\.5")])
def test_betas_outside_unit_interval(name, betas, bad):
    cls = rule_with(name, "betas")
    with pytest.raises(ValueError, match=rf"^{name}: {bad}$"):
        cls(betas=betas)
    with pytest.raises(TypeError, match=rf"{name}: betas must be a pair .*; got 0\.9"):
        cls(betas=0.9)


@pytest.mark.parametrize("name", RULES)
def test_every_real_is_range_checked(name):
    """Each numeric hyper-parameter refuses values just outside its declared range, NaN and bools."""
    cls = rule_cls(name)
    for h in cls.HYPER:
        parts = [(h, lambda v: v)] if isinstance(h, Real) else []
        if isinstance(h, Pair):
            parts = [
                (part, (lambda i: lambda v: tuple(v if j == i else h.default[j] for j in range(2)))(i))
                for i, part in enumerate(h.parts)
            ]
        for part, wrap in parts:
            bad = []
            if math.isfinite(part.low):
                bad.append(part.low - 1.0 if not part.low_open else part.low)
            if math.isfinite(part.high):
                bad.append(part.high + 1.0 if not part.high_open else part.high)
            bad.append(math.nan)
            for value in bad:
                with pytest.raises(ValueError, match=rf"^{name}: {part.name} must be .*got {re.escape(repr(value))}"):
                    cls(**{h.name: wrap(value)})
            with pytest.raises(TypeError, match=rf"{part.name} must be a real number"):
                cls(**{h.name: wrap(False)})


@pytest.mark.parametrize("name", RULES)
def test_options_checked(name):
    cls = rule_cls(name)
    for h in cls.HYPER:
        if isinstance(h, Choice):
            typo = h.default[:-1] + ("x" if not h.default.endswith("x") else "y")
            with pytest.raises(ValueError, match=rf"^{name}: {h.name} must be one of .*; got {re.escape(repr(typo))} "
                                                 rf"\(did you mean .*{re.escape(repr(h.default))}"):
                cls(**{h.name: typo})
            with pytest.raises(ValueError, match=rf"{h.name} must be one of"):
                cls(**{h.name: 3})
        elif isinstance(h, Flag):
            with pytest.raises(TypeError, match=rf"^{name}: {h.name} must be True or False; got 'yes'"):
                cls(**{h.name: "yes"})
            with pytest.raises(TypeError, match=rf"{h.name} must be True or False; got 1"):
                cls(**{h.name: 1})
        elif isinstance(h, Int):
            with pytest.raises(TypeError, match=rf"^{name}: {h.name} must be an integer"):
                cls(**{h.name: 1.5})
            with pytest.raises(ValueError, match=rf"^{name}: {h.name} must be an integer >= {h.low}.*got {h.low - 1}"):
                cls(**{h.name: h.low - 1})


def test_unknown_option_value_hint():
    with pytest.raises(ValueError, match=r"adam: eps_mode must be one of 'after_bias_correction', 'inside_sqrt', "
                                         r"'eps_hat'; got 'inside_sqr' \(did you mean 'inside_sqrt'\?\)"):
        ro.rules.adam(eps_mode="inside_sqr")
    with pytest.raises(ValueError, match=r"radam: threshold must be one of .*; got 'rho>6' \(did you mean"):
        ro.rules.radam(threshold="rho>6")


@pytest.mark.parametrize("name", RULES)
def test_unknown_hyper_parameter(name):
    cls = rule_cls(name)
    declared = [h.name for h in cls.HYPER]
    with pytest.raises(TypeError, match=rf"^{name}: unknown hyper-parameter 'learning_rate_x'.*\(it takes "):
        cls(learning_rate_x=1.0)
    if "lr" in declared:
        with pytest.raises(TypeError, match=rf"^{name}: unknown hyper-parameter 'lrr'; did you mean 'lr'"):
            cls(lrr=0.1)
    if "betas" in declared:
        with pytest.raises(TypeError, match=r"unknown hyper-parameter 'beta'; did you mean 'betas'"):
            cls(beta=(0.9, 0.99))


def test_unknown_rule_name():
    with pytest.raises(ValueError, match=r"unknown rule 'adamm'; did you mean 'adam'.*\(known: .*sgd"):
        ro.rules.get("adamm")
    with pytest.raises(ValueError, match=r"unknown rule 'rmsprob'; did you mean 'rmsprop'"):
        ro.rules.rule_class("rmsprob")
    with pytest.raises(ValueError, match=r"unknown rule 'nope' \(known: "):
        ro.rules.get("nope")
    with pytest.raises(AttributeError, match="no attribute 'adamm'"):
        ro.rules.adamm  # noqa: B018


@pytest.mark.parametrize("name", rules_with("nesterov"))
def test_nesterov_needs_momentum(name):
    cls = rule_with(name, "nesterov")
    if not has(cls, "momentum"):
        pytest.skip(f"{name} has nesterov but no momentum")
    with pytest.raises(ValueError, match=rf"{name}: nesterov=True needs momentum > 0.*got momentum=0"):
        cls(nesterov=True)
    with pytest.raises(ValueError, match=r"nesterov=True needs .*dampening = 0.*dampening=0\.5"):
        cls(nesterov=True, momentum=0.9, dampening=0.5)
    with pytest.raises(ValueError, match=r"nesterov=True needs momentum > 0"):
        cls(nesterov=True, momentum=np.array([[0.9], [0.0]]))
    cls(nesterov=True, momentum=0.9)


# ---------------------------------------------------------------------------------------
# bad input: refused by init / step
# ---------------------------------------------------------------------------------------


def host(t):
    """A NumPy copy of a tree (of any library's arrays; other leaves kept) for comparisons."""
    if isinstance(t, dict):
        return {k: host(v) for k, v in t.items()}
    if isinstance(t, (list, tuple)):
        return type(t)(host(v) for v in t)
    return ro._array.to_numpy(t) if ro._array.is_array(t) else copy.deepcopy(t)


def expect_refused(rule, p, g, state, exc, pattern):
    """``step`` and ``trace`` raise ``exc`` matching ``pattern`` and leave every input as it was."""
    before = host((p, g, dict(state.slots) if isinstance(state, State) else None))
    t = state.t if isinstance(state, State) else None
    for fn in (rule.step, rule.trace):
        with pytest.raises(exc, match=pattern):
            fn(p, g, state)
    np.testing.assert_equal(host((p, g)), before[:2])
    if isinstance(state, State):
        np.testing.assert_equal(host(dict(state.slots)), before[2])
        assert state.t == t


@pytest.mark.parametrize("name", RULES)
def test_bad_params_and_grads(name):
    cls = rule_cls(name)
    rule = cls()
    rng = np.random.default_rng(3)
    p = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    state = rule.init(p)
    g = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    # shapes
    expect_refused(rule, p, {**g, "b": g["b"][:3]}, state, ValueError,
                   r"grads\['b'\] has shape \(3,\) but params\['b'\] has shape \(4,\)")
    # dtypes
    expect_refused(rule, p, {**g, "w": g["w"].astype(np.float32)}, state, TypeError,
                   r"grads\['w'\] has dtype float32 but params\['w'\] has dtype float64")
    # integer and boolean arrays
    expect_refused(rule, p, {**g, "b": np.arange(4)}, state, TypeError,
                   r"grads\['b'\] has dtype int64; update rules need real floating arrays")
    with pytest.raises(TypeError, match=r"params\['b'\] has dtype int64; update rules need real floating"):
        rule.init({**p, "b": np.arange(4)})
    with pytest.raises(TypeError, match=r"params has dtype bool"):
        rule.init(np.ones(3, dtype=bool))
    with pytest.raises(TypeError, match=r"params has dtype complex128"):
        rule.init(np.ones(3, dtype=complex))
    # tree structures
    expect_refused(rule, p, [g["w"], g["b"]], state, ValueError,
                   r"grads must have the structure of params: params is dict\('w': array, 'b': array\), "
                   r"grads is \[array, array\]")
    expect_refused(rule, p, {"b": g["b"], "w": g["w"]}, state, ValueError, r"grads must have the structure of params")
    expect_refused(rule, p, {"w": g["w"]}, state, ValueError, r"grads is dict\('w': array\)")
    # not arrays at all
    expect_refused(rule, p, {**g, "b": [1.0, 2.0]}, state, TypeError,
                   r"grads\['b'\]\[0\] must be an array or a dict/list/tuple of arrays; got float")
    with pytest.raises(ValueError, match=r"params holds no arrays"):
        rule.init({})
    with pytest.raises(TypeError, match=r"params must be an array or a dict/list/tuple of arrays; got float"):
        rule.init(1.0)


@pytest.mark.parametrize("name", RULES)
def test_mixed_array_libraries(name):
    torch = pytest.importorskip("torch")
    cls = rule_cls(name)
    rule = cls()
    p = np.linspace(-1.0, 1.0, 5)
    state = rule.init(p)
    expect_refused(rule, p, torch.ones(5, dtype=torch.float64), state, TypeError,
                   r"params and grads must all come from one array library; got numpy\.ndarray, torch\.Tensor")
    with pytest.raises(TypeError, match=r"params must all come from one array library"):
        rule.init({"a": p, "b": torch.ones(5, dtype=torch.float64)})
    # a NumPy state for torch params: shapes/dtypes agree, so the rule must notice the library
    pt = torch.asarray(p)
    tstate = rule.init(pt)
    if state.slots:
        with pytest.raises((TypeError, ValueError)):
            rule.step(pt, torch.ones(5, dtype=torch.float64), state)
    rule.step(pt, torch.ones(5, dtype=torch.float64), tstate)


def _other_rule_state(name, p):
    other = "adam" if ro.rules.rule_class(name).family != "adam" else "sgd"
    return other, ro.rules.get(other, momentum=0.9).init(p) if other == "sgd" else ro.rules.adam().init(p)


@pytest.mark.parametrize("name", RULES)
def test_state_from_another_rule(name):
    cls = rule_cls(name)
    rule = cls()
    p, g = np.ones(4), np.full(4, 0.5)
    other, state = _other_rule_state(name, p)
    family = cls.family
    expect_refused(rule, p, g, state, ValueError,
                   rf"state was made by the rule {other!r}; {name} needs a state of {family!r} "
                   rf"\(call {name}\.init\(params\)\)")
    expect_refused(rule, p, g, {"m": p}, TypeError,
                   rf"state must be the State that {name}\.init\(\) or \.step\(\) returned; got dict")
    # a state for other params (shape, then structure)
    good = rule.init(p)
    if good.slots:
        expect_refused(rule, p, g, rule.init(np.ones(3)), ValueError,
                       r"state\['\w+'\] for params has shape \(3,\) and dtype float64, but the parameter has "
                       r"shape \(4,\)")
        expect_refused(rule, p, g, rule.init(np.ones(4, dtype=np.float32)), ValueError,
                       r"state\['\w+'\] for params has shape \(4,\) and dtype float32")
        expect_refused(rule, p, g, rule.init([p]), ValueError,
                       r"state\['\w+'\] has structure \[array\] but params is array")
    bad_t = State(good.rule, -1, good.slots)
    expect_refused(rule, p, g, bad_t, ValueError, r"state\.t must be a non-negative int; got -1")


def test_state_from_another_configuration():
    p, g = np.ones(4), np.full(4, 0.5)
    state = ro.rules.adam().init(p)
    pattern = (r"state has slots \['m', 'v'\] but adam\(.*amsgrad=True.*\) needs \['m', 'v', 'v_max'\]; "
               r"it was made with other options")
    expect_refused(ro.rules.adam(amsgrad=True), p, g, state, ValueError, pattern)
    expect_refused(ro.rules.amsgrad(), p, g, state, ValueError, r"needs \['m', 'v', 'v_max'\]")
    expect_refused(ro.rules.adam(), p, g, ro.rules.amsgrad().init(p), ValueError,
                   r"state has slots \['m', 'v', 'v_max'\] but adam\(.*\) needs \['m', 'v'\]")
    expect_refused(ro.rules.sgd(momentum=0.9), p, g, ro.rules.sgd().init(p), ValueError,
                   r"state has slots \[\] but sgd\(.*momentum=0\.9.*\) needs \['b'\]")
    # the same family may share a state: adam -> adamw is allowed
    ro.rules.adamw().step(p, g, state)


@pytest.mark.parametrize("name", rules_with("lr"))
def test_batched_hyper_must_broadcast(name):
    cls = rule_with(name, "lr")
    lr = np.full((5, 1), 1e-3)
    try:
        rule = cls(lr=lr)
    except ValueError as exc:  # per-array or tree-pooled rules refuse batched hyper-parameters, saying why
        assert "batched hyper-parameters are not supported" in str(exc)
        return
    p = {"w": np.ones((3, 4)), "b": np.ones(4)}
    pattern = (rf"{name}: lr has shape \(5, 1\), which does not broadcast against params\['w'\] of shape \(3, 4\)")
    with pytest.raises(ValueError, match=pattern):
        rule.init(p)
    state = cls().init(p)
    expect_refused(rule, p, p, state, ValueError, pattern)
    # broadcasting that would enlarge a parameter is refused too
    with pytest.raises(ValueError, match=r"lr has shape \(3, 1\), which does not broadcast against params\['b'\] "
                                         r"of shape \(4,\)"):
        cls(lr=np.full((3, 1), 1e-3)).init(p)
    # a batched hyper-parameter that fits works, and matches the scalar one
    q = cls(lr=np.full((3, 1), 1e-3))
    p1, _ = q.step(p["w"], np.full((3, 4), 0.25), q.init(p["w"]))
    p2, _ = cls(lr=1e-3).step(p["w"], np.full((3, 4), 0.25), cls(lr=1e-3).init(p["w"]))
    np.testing.assert_array_equal(p1, p2)


@pytest.mark.parametrize("name", RULES)
def test_errors_before_any_work(name):
    """A bad grad in the *last* leaf: the step raises, returns nothing and leaves every input alone,
    also on read-only arrays (no half-done write)."""
    from conftest import BACKENDS

    cls = rule_cls(name)
    for backend in BACKENDS[:2]:
        for label, kw in variants(cls):
            rule = cls(**kw)
            p, state, _ = run(rule, backend, steps=2, freeze=True)
            g = backend.tree(np_tree(9, SHAPES))
            g["b"] = backend.asarray(np.ones(5))
            backend.freeze(g)
            before = copy.deepcopy((p, g, dict(state.slots)))
            result = "not called"
            with pytest.raises(ValueError, match=r"grads\['b'\] has shape \(5,\)"):
                result = rule.step(p, g, state)
            assert result == "not called"
            assert state.t == 2
            np.testing.assert_equal((p, g, dict(state.slots)), before)


@pytest.mark.parametrize("name", RULES)
def test_zero_dimensional_params_stay_arrays_step_after_step(name):
    """NumPy computes on 0-D arrays into NumPy scalars; the driver keeps params, state and trace
    arrays (the second step used to refuse the scalar the first one returned)."""
    rule = rule_cls(name)()
    p = np.asarray(1.5, dtype=np.float32)
    state = rule.init(p)
    for k in range(3):
        g = np.asarray(0.25 * (k + 1), dtype=np.float32)
        p, state, trace = rule.trace(p, g, state)
        assert type(p) is np.ndarray and p.shape == () and p.dtype == np.float32
        assert all(type(v) is np.ndarray and v.shape == () for v in state.slots.values())
        assert type(trace["update" if "update" in trace else "params"]) is np.ndarray
    want = rule_cls(name)()
    q, s = np.asarray([1.5], dtype=np.float32), want.init(np.asarray([1.5], dtype=np.float32))
    for k in range(3):
        q, s = want.step(q, np.asarray([0.25 * (k + 1)], dtype=np.float32), s)
    assert p == q[0]  # the same numbers as a 1-element array
