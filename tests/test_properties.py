"""Properties that the math guarantees, checked with hypothesis for every rule in ``names()``.

* batched == separate: hyper-parameters of shape (K, 1) against params (K, d) give, bit for
  bit, the K runs with Python-float hyper-parameters (float64 and float32);
* scale invariance: with ε = 0, multiplying every gradient by a power of two leaves the
  trajectory of the adaptive and sign-based rules unchanged *exactly* (every operation
  commutes with an exact power-of-two scaling); with their default ε only approximately;
  SGD is equivariant instead (the step scales);
* sign symmetry: negating params and gradients negates the trajectory, bit for bit;
* trace consistency: ``params_before - params_after`` is the traced ``update`` (to the
  rounding of one subtraction), decoupled weight decay accounted for; traced slots are the
  new state;
* float32 runs stay close to float64 runs.

Hypothesis settings come from the "ci" profile in conftest (derandomized, no deadline);
the example counts below are kept small so that the file runs in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import refopt as ro
from _variants import rule_cls, switched_on, variants
from refopt.rules._base import Pair, Real

RULES = ro.rules.names()


def declared(cls) -> dict:
    return {h.name: h for h in cls.HYPER}


def keep_declared(cls, kw: dict) -> dict:
    names = declared(cls)
    return {k: v for k, v in kw.items() if k in names}


def trajectory(rule, p, grads):
    """Params after each step (a list), on plain NumPy arrays."""
    state = rule.init(p)
    out = []
    for g in grads:
        p, state = rule.step(p, g, state)
        out.append(p)
    return out, state


def finite(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def arrays(shape, lo=-10.0, hi=10.0):
    return hnp.arrays(np.float64, shape, elements=finite(lo, hi))


def signed_arrays(shape, lo, hi):
    """Arrays whose entries have magnitudes in [lo, hi] and either sign (no zeros)."""
    return st.tuples(arrays(shape, lo, hi), hnp.arrays(np.bool_, shape)).map(
        lambda t: np.where(t[1], -t[0], t[0])
    )


def batch_axes_kw(cls, k: int) -> dict:
    return {"batch_axes": k} if "batch_axes" in declared(cls) else {}


# ---------------------------------------------------------------------------------------
# batched == separate
# ---------------------------------------------------------------------------------------


def value_strategy(h: Real):
    """Values of a Real around its default and inside its range (0 and positive for 0-defaults)."""
    hi_cap = h.high if not h.high_open else h.high - 1e-3 * max(1.0, abs(h.high))
    if h.default == 0:
        return st.one_of(st.just(0.0), finite(0.0, min(switched_on(h), hi_cap)))
    d = float(h.default)
    lo, hi = max(d / 4, h.low), min(d * 4, hi_cap)
    return finite(lo, hi)


def batchable_parts(cls):
    """[(hyper name, part index or None, Real)] of every batchable numeric hyper-parameter."""
    out = []
    for h in cls.HYPER:
        if type(h) is Real:
            out.append((h.name, None, h))
        elif isinstance(h, Pair) and h.batchable:
            out += [(h.name, i, part) for i, part in enumerate(h.parts)]
    return out


def assemble(cls, parts, columns, row=None):
    """Hyper-parameters: (K, 1) arrays (row None) or the Python floats of one row."""
    kw = {}
    for (name, idx, _), col in zip(parts, columns):
        value = col.reshape(-1, 1) if row is None else float(col[row])
        if idx is None:
            kw[name] = value
        else:
            pair = list(kw.get(name, declared(cls)[name].default))
            pair[idx] = value
            kw[name] = tuple(pair)
    return kw


K, D, STEPS = 3, 4, 6


def column_strategy(name, hyper, h):
    return st.lists(value_strategy(h), min_size=K, max_size=K).map(np.array)


# rules whose quantities are per array or pooled over the whole tree without batch axes: they
# refuse batched hyper-parameters (a ValueError that says why)
NOT_BATCHABLE = {"fromage", "adafactor", "clipped_adafactor", "clipped_lion", "clip_update_adam", "clip_update_lion"}


@pytest.mark.parametrize("name", [n for n in RULES if n not in NOT_BATCHABLE])
def test_batched_equals_separate(name):
    cls = rule_cls(name)
    parts = batchable_parts(cls)
    options = variants(cls)
    assert parts, f"{name} has no batchable hyper-parameter"

    @settings(max_examples=max(12, 2 * len(options)))
    @given(
        columns=st.tuples(*(column_strategy(name, hyper, h) for hyper, _, h in parts)),
        variant=st.sampled_from(options),
        p0=arrays((K, D)),
        grads=arrays((STEPS, K, D)),
    )
    def check(columns, variant, p0, grads):
        label, base = variant
        try:
            batched = cls(**{**base, **assemble(cls, parts, columns), **batch_axes_kw(cls, 1)})
            separate = [cls(**{**base, **assemble(cls, parts, columns, row=k)}) for k in range(K)]
        except ValueError:
            reject()
        for dtype in (np.float64, np.float32):
            got, state = trajectory(batched, p0.astype(dtype), grads.astype(dtype))
            for k in range(K):
                want, sstate = trajectory(separate[k], p0[k].astype(dtype), grads[:, k].astype(dtype))
                for t in range(STEPS):
                    assert got[t].dtype == dtype
                    np.testing.assert_array_equal(
                        got[t][k], want[t], err_msg=f"{separate[k]!r} [{label}] row {k}, t={t + 1}, {dtype.__name__}"
                    )
                for slot in sstate.slots:
                    if slot in state.slots:
                        np.testing.assert_array_equal(state.slots[slot][k], sstate.slots[slot], err_msg=slot)

    check()


def test_batched_eps_root_mixed_zero():
    """Rows with ε_root = 0 keep torch's √v/√bc2 form while others take optax's √(v̂ + ε_root)."""
    eps_root = np.array([[0.0], [0.0625]])
    beta2 = np.array([[0.9903323786008226], [0.5]])
    batched = ro.rules.adam(lr=2.0**-8, betas=(0.5, beta2), eps_root=eps_root)
    got, _ = trajectory(batched, np.zeros((2, 4)), np.ones((6, 2, 4)))
    for k in range(2):
        rule = ro.rules.adam(lr=2.0**-8, betas=(0.5, float(beta2[k, 0])), eps_root=float(eps_root[k, 0]))
        want, _ = trajectory(rule, np.zeros(4), np.ones((6, 4)))
        np.testing.assert_array_equal(got[-1][k], want[-1])


# ---------------------------------------------------------------------------------------
# scale invariance
# ---------------------------------------------------------------------------------------

# Exactly invariant to g -> c g (c a power of two) with these settings: every quantity is
# homogeneous in g (m ~ c, v ~ c², √v ~ c, m/√v ~ 1, sign(c m) = sign(m), d/‖d‖), so an exact
# scaling by 2^k commutes with every rounding.  RAdam only with warmup="none": its warm-up
# steps (γ m̂) scale with c; its rectified steps do not.
EXACT = {
    "adam": [dict(eps=0.0), dict(eps=0.0, amsgrad=True), dict(eps=0.0, ema="lerp", eps_mode="inside_sqrt"),
             dict(eps=0.0, eps_mode="eps_hat", decoupled_weight_decay=True, weight_decay=0.1)],
    "adamw": [dict(eps=0.0)],
    "amsgrad": [dict(eps=0.0)],
    "radam": [dict(eps=0.0, warmup="none")],
    "adabelief": [dict(eps=0.0), dict(eps=0.0, amsgrad=True), dict(eps=0.0, rectify=True, degenerated_to_sgd=False)],
    "rmsprop": [dict(eps=0.0), dict(eps=0.0, centered=True), dict(eps=0.0, momentum=0.9)],
    "adagrad": [dict(eps=0.0), dict(eps=0.0, lr_decay=0.1)],
    "lion": [dict(), dict(weight_decay=0.1)],
    "signsgd": [dict(), dict(momentum=0.9)],
    "normalized_sgd": [dict(), dict(momentum=0.9), dict(norm="per_tensor", scale_by_sqrt_n=True)],
    "clipped_adam": [dict(eps=0.0)],
    "yogi": [dict(eps=0.0, initial_accumulator_value=0.0), dict(eps=0.0, initial_accumulator_value=0.0, eps_mode="after_bias_correction")],
    "adamax": [dict(eps=0.0), dict(eps=0.0, eps_mode="in_denominator", ema="lerp")],
    "nadam": [dict(eps=0.0), dict(eps=0.0, schedule="keras3", decoupled_weight_decay=True, weight_decay=0.1)],
    "fromage": [dict(), dict(p_bound=2.0)],  # (‖θ‖/‖g‖) g: ‖2^k g‖ = 2^k ‖g‖ exactly
    "clipped_lion": [dict(), dict(weight_decay=0.1)],  # τ scales with g; the sign does not
}
# Only approximately invariant: ε (not scaled with g) enters the denominator; the relative
# change of the displacement is of the order ε / √v̂ (Adadelta: ε / E[g²] inside its roots).
APPROX = {
    "adam": (dict(), 1e-5),
    "adamw": (dict(), 1e-5),
    "amsgrad": (dict(), 1e-5),
    "radam": (dict(warmup="none"), 1e-5),
    "adabelief": (dict(), 1e-5),
    "rmsprop": (dict(), 1e-5),
    "adagrad": (dict(), 1e-5),
    "adadelta": (dict(), 2e-2),
    "clipped_adam": (dict(), 1e-5),
    "yogi": (dict(eps=1e-8, initial_accumulator_value=0.0), 1e-5),
    "adamax": (dict(), 1e-5),
    "nadam": (dict(), 1e-5),
    "adafactor": (dict(), 1e-5),  # ε1 = 1e-30 added to g²
    "clipped_adafactor": (dict(), 1e-5),
    "clip_update_adam": (dict(), 1e-5),
}
# Not invariant at all: sgd and clipped_sgd (the step scales with g), diffgrad (its friction
# ξ = σ(|Δg|) depends on the size of Δg), adabound and amsbound (where a bound binds, the step is
# a fixed rate times m, which scales with g).
NOT_INVARIANT = {"sgd", "clipped_sgd", "diffgrad", "adabound", "amsbound",
                 "msvag", "clip_update_lion"}  # M-SVAG steps α m̂ γ; clip-update Lion steps the raw interpolation

SCALE_STEPS = 8  # RAdam with the default "rho>4" threshold is rectified from t = 5 on


def test_scale_tables_cover_every_rule():
    for name in RULES:
        assert name in EXACT or name in APPROX or name in NOT_INVARIANT, name


scale_examples = dict(
    p0=arrays((6,)),
    grads=signed_arrays((SCALE_STEPS, 6), 0.1, 10.0),
    k=st.integers(-6, 6).filter(lambda k: k != 0),
)


@pytest.mark.parametrize("name", [n for n in RULES if n in EXACT])
def test_scale_invariance_exact(name):
    cls = rule_cls(name)
    rules = [cls(**keep_declared(cls, kw)) for kw in EXACT[name]]

    @settings(max_examples=10)
    @given(**scale_examples)
    def check(p0, grads, k):
        c = 2.0**k
        for rule in rules:
            for dtype in (np.float64, np.float32):
                p, g = p0.astype(dtype), grads.astype(dtype)
                want, _ = trajectory(rule, p, g)
                got, _ = trajectory(rule, p, g * dtype(c))
                for t in range(SCALE_STEPS):
                    np.testing.assert_array_equal(got[t], want[t], err_msg=f"{rule!r} c=2^{k} t={t + 1} {dtype.__name__}")

    check()


@pytest.mark.parametrize("name", [n for n in RULES if n in APPROX])
def test_scale_invariance_approximate(name):
    cls = rule_cls(name)
    kw, rtol = APPROX[name]
    rule = cls(**keep_declared(cls, kw))

    @settings(max_examples=8)
    @given(p0=arrays((6,)), grads=signed_arrays((SCALE_STEPS, 6), 0.5, 10.0), k=st.integers(-3, 3))
    def check(p0, grads, k):
        want, _ = trajectory(rule, p0, grads)
        got, _ = trajectory(rule, p0, grads * 2.0**k)
        moved = np.abs(want[-1] - p0)
        np.testing.assert_allclose(got[-1] - p0, want[-1] - p0, rtol=rtol, atol=1e-12 + 1e-3 * rtol * moved.max())

    check()


@pytest.mark.parametrize("name", ["sgd", "clipped_sgd"])
def test_sgd_steps_scale_with_the_gradient(name):
    """SGD is not invariant but equivariant: the displacement scales by c (up to one rounding of p)."""
    cls = rule_cls(name)

    @settings(max_examples=10)
    @given(p0=arrays((6,)), grads=signed_arrays((4, 6), 0.1, 10.0), k=st.integers(1, 4))
    def check(p0, grads, k):
        for kw in (dict(lr=0.01), dict(lr=0.01, momentum=0.9)):
            rule = cls(**keep_declared(cls, kw))
            want, _ = trajectory(rule, p0, grads)
            got, _ = trajectory(rule, p0, grads * 2.0**k)
            ulp = 8 * np.spacing(np.maximum(np.abs(p0), np.abs(got[-1]))) * 2.0**k
            np.testing.assert_allclose(got[-1] - p0, 2.0**k * (want[-1] - p0), rtol=0, atol=ulp.max())
            assert not np.array_equal(got[-1], want[-1])

    check()


# ---------------------------------------------------------------------------------------
# sign symmetry
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RULES)
def test_sign_symmetry(name):
    cls = rule_cls(name)
    # a non-zero initial first moment (Yogi's m_0 in optax and the torch ports) has a sign of its own
    options = [v for v in variants(cls) if not v[1].get("initial_momentum_value")]

    @settings(max_examples=4)
    @given(p0=arrays((2, 3)), grads=arrays((6, 2, 3)))
    def check(variant, p0, grads):
        label, kw = variant
        rule = cls(**kw)
        for dtype in (np.float64, np.float32):
            p, g = p0.astype(dtype), grads.astype(dtype)
            want, _ = trajectory(rule, {"a": p, "b": [p[0] * 0.5]}, [{"a": x, "b": [x[1]]} for x in g])
            got, _ = trajectory(rule, {"a": -p, "b": [-p[0] * 0.5]}, [{"a": -x, "b": [-x[1]]} for x in g])
            for t, (w, h) in enumerate(zip(want, got)):
                for key in ("a", "b"):
                    np.testing.assert_array_equal(
                        np.asarray(h[key]), -np.asarray(w[key]),
                        err_msg=f"{rule!r} [{label}] {key} t={t + 1} {dtype.__name__}",
                    )

    for variant in options:
        check(variant)


# ---------------------------------------------------------------------------------------
# trace consistency
# ---------------------------------------------------------------------------------------

# (hyper-parameters that switch decoupled weight decay on); decay = 1 - lr * weight_decay
DECOUPLED = {
    "adam": dict(decoupled_weight_decay=True, weight_decay=0.1),
    "adamw": dict(weight_decay=0.1),
    "radam": dict(decoupled_weight_decay=True, weight_decay=0.1),
    "sgd": dict(decoupled_weight_decay=True, weight_decay=0.1, momentum=0.9),
    "adabelief": dict(weight_decouple=True, weight_decay=0.1),
    "diffgrad": dict(weight_decouple=True, weight_decay=0.1),
    "lion": dict(weight_decay=0.1),
}


def no_decay(cls, kw):
    """``kw`` with weight decay off (adamw's default is 0.01)."""
    return {**kw, "weight_decay": 0.0} if "weight_decay" in declared(cls) else kw


@pytest.mark.parametrize("name", RULES)
def test_trace_consistency(name):
    cls = rule_cls(name)
    options = [(label, no_decay(cls, kw)) for label, kw in variants(cls)]
    if name in DECOUPLED and set(DECOUPLED[name]) <= set(declared(cls)):
        options.append(("decoupled", DECOUPLED[name]))

    @settings(max_examples=4)
    @given(p0=arrays((5,)), grads=arrays((6, 5)))
    def check(variant, p0, grads):
        label, kw = variant
        try:
            rule = cls(**kw)
        except ValueError:
            reject()
        decay = 1.0 - rule.lr * rule.weight_decay if label == "decoupled" else 1.0
        for dtype in (np.float64, np.float32):
            p = p0.astype(dtype)
            state = state_step = rule.init(p)
            p_step = p
            for t, g in enumerate(grads.astype(dtype)):
                new_p, new_state, tr = rule.trace(p, g, state)
                p_step, state_step = rule.step(p_step, g, state_step)
                where = f"{rule!r} [{label}] t={t + 1} {dtype.__name__}"
                np.testing.assert_array_equal(new_p, p_step, err_msg=where)
                assert list(tr)[0] == "t" and list(tr)[-1] == "params" and tr["params"] is new_p
                for slot in new_state.slots:
                    np.testing.assert_array_equal(new_state.slots[slot], state_step.slots[slot], err_msg=where)
                    if slot in tr:
                        np.testing.assert_array_equal(tr[slot], new_state.slots[slot], err_msg=f"{where} {slot}")
                if "update" in tr:
                    before = p * dtype(decay) if decay != 1.0 else p
                    moved = before - new_p
                    # p_new = fl(before - update): one rounding of size <= ulp(p_new)/2, then one more
                    tol = np.spacing(np.maximum(np.abs(before), np.abs(new_p)).astype(dtype))
                    assert np.all(np.abs(moved - tr["update"]) <= tol), (where, moved, tr["update"])
                p, state = new_p, new_state

    for variant in options:
        check(variant)


# ---------------------------------------------------------------------------------------
# float32 close to float64
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RULES)
def test_float32_tracks_float64(name):
    cls = rule_cls(name)
    options = variants(cls)

    @settings(max_examples=3)
    @given(seed=st.integers(0, 2**32 - 1))
    def check(variant, seed):
        label, kw = variant
        rule = cls(**kw)
        rng = np.random.default_rng(seed)
        p0 = rng.standard_normal(8)
        grads = rng.standard_normal((10, 8)) * rng.uniform(0.1, 10.0)
        p64, _ = trajectory(rule, p0, grads)
        p32, _ = trajectory(rule, p0.astype(np.float32), grads.astype(np.float32))
        assert p32[-1].dtype == np.float32
        moved = np.abs(p64[-1] - p0).max()
        np.testing.assert_allclose(
            p32[-1], p64[-1], rtol=1e-4, atol=1e-5 * (1.0 + np.abs(p0).max()) + 1e-3 * moved,
            err_msg=f"{rule!r} [{label}]",
        )

    for variant in options:
        check(variant)
