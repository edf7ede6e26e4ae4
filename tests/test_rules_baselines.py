"""RMSprop, Adagrad, Adadelta, Lion, signSGD/Signum and normalised SGD.

Golden values of update-rules.md §5 on every backend; first and second steps computed by
hand for every option (numbers chosen so that a wrong ε placement, default, buffer start or
step counter changes the result); sign(0) = 0 and zero gradients; batched == separate runs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refopt as ro
from conftest import BACKENDS, golden_run

# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def run(rule, backend, params, grads, dtype=np.float64):
    """Step ``rule`` through ``grads`` (a list of trees) on ``backend``.

    Returns (params, state, traces) with params and traces as NumPy; inputs and states are
    frozen on the read-only backend, so a write into any of them fails.
    """
    p = backend.freeze(backend.tree(params, dtype))
    state = rule.init(p)
    freeze_state(backend, state)
    traces = []
    for g in grads:
        g = backend.freeze(backend.tree(g, dtype))
        p, state, tr = rule.trace(p, g, state)
        freeze_state(backend, state)
        traces.append({k: (backend.tree_to_numpy(v) if not isinstance(v, (int, float, np.ndarray)) else v)
                       for k, v in tr.items()})
    return backend.tree_to_numpy(p), state, traces


def _np():
    """The plain NumPy backend, for tests that check conventions rather than backends."""
    return BACKENDS[0]


def freeze_state(backend, state):
    if state.slots:
        backend.freeze(dict(state.slots))


def close(actual, expected, rtol=1e-14, atol=0.0):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64),
                               rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------
# golden values (update-rules.md §5), every backend
# ---------------------------------------------------------------------------------------

GOLDEN = [
    ("rmsprop", dict(), [0.9000000022, -1.900000001, 0.4000000019], [0.7009302727, -1.699149636, 0.2206480159]),
    ("rmsprop", dict(centered=True, momentum=0.9), [0.8994962207, -1.899496219, 0.3994962204],
     [0.1442647634, -1.134601383, -0.2428547803]),
    ("adagrad", dict(), [0.99, -1.99, 0.49], [0.9679351015, -1.967919268, 0.4680707529]),
    ("adagrad", dict(lr_decay=0.1, initial_accumulator_value=0.1), [0.9900246003, -1.990004996, 0.4900175867],
     [0.9719450514, -1.971901314, 0.4720326587]),
    ("adadelta", dict(), [0.9968377231, -1.996837722, 0.4968377229], [0.9836523278, -1.983646995, 0.4836969038]),
]


@pytest.mark.parametrize("name,hyper,one,five", GOLDEN, ids=[f"{g[0]}-{i}" for i, g in enumerate(GOLDEN)])
def test_golden_values(name, hyper, one, five, backend):
    rule = ro.rules.get(name, **hyper)
    # the notes print 10 significant digits
    np.testing.assert_allclose(golden_run(rule, 1, backend), one, rtol=1e-9, atol=0)
    np.testing.assert_allclose(golden_run(rule, 5, backend), five, rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------------------------------
# defaults
# ---------------------------------------------------------------------------------------

DEFAULTS = {
    "rmsprop": dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False,
                    decoupled_weight_decay=False, initial_accumulator_value=0.0,
                    eps_mode="outside_sqrt", lr_in_momentum=False, ema="multiply_add"),
    "adagrad": dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                    maximize=False, decoupled_weight_decay=False, eps_mode="outside_sqrt"),
    "adadelta": dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False, decoupled_weight_decay=False),
    "lion": dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False),
    "signsgd": dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False,
                    buffer_init="first_gradient"),
    "normalized_sgd": dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False,
                           buffer_init="first_gradient", norm="global", scale_by_sqrt_n=False, eps=0.0,
                           batch_axes=0),
}


@pytest.mark.parametrize("name", list(DEFAULTS))
def test_defaults(name):
    rule = ro.rules.get(name)
    assert dict(rule.hyper) == DEFAULTS[name]
    assert rule.name == name and rule.title and rule.citation


@pytest.mark.torch
def test_torch_defaults_match_torch():
    torch = pytest.importorskip("torch")
    import inspect

    for name, cls in [("rmsprop", torch.optim.RMSprop), ("adagrad", torch.optim.Adagrad),
                      ("adadelta", torch.optim.Adadelta)]:
        sig = inspect.signature(cls.__init__).parameters
        for key, value in DEFAULTS[name].items():
            if key in sig:
                assert sig[key].default == value, (name, key)


# ---------------------------------------------------------------------------------------
# RMSprop by hand
# ---------------------------------------------------------------------------------------


def test_rmsprop_eps_outside_sqrt_by_hand(backend):
    # α = 0.75, g = 2: v = 0.25·4 = 1; ε = 0.44: √v + ε = 1.44 (torch) vs √(v + ε) = 1.2
    rule = ro.rules.rmsprop(lr=0.5, alpha=0.75, eps=0.44)
    p, _, tr = run(rule, backend, np.array([1.0]), [np.array([2.0]), np.array([4.0])])
    close(tr[0]["v"], [1.0])
    close(tr[0]["denom"], [1.44])
    close(tr[0]["update"], [0.5 * 2 / 1.44])
    # step 2: v = 0.75·1 + 0.25·16 = 4.75 (no bias correction)
    close(tr[1]["v"], [4.75])
    close(tr[1]["denom"], [math.sqrt(4.75) + 0.44])
    close(p, [1.0 - 0.5 * 2 / 1.44 - 0.5 * 4 / (math.sqrt(4.75) + 0.44)])


def test_rmsprop_eps_inside_sqrt_by_hand(backend):
    rule = ro.rules.rmsprop(lr=0.5, alpha=0.75, eps=0.44, eps_mode="inside_sqrt")
    p, _, tr = run(rule, backend, np.array([1.0]), [np.array([2.0]), np.array([4.0])])
    close(tr[0]["denom"], [1.2])
    close(tr[1]["denom"], [math.sqrt(4.75 + 0.44)])
    close(p, [1.0 - 0.5 * 2 / 1.2 - 0.5 * 4 / math.sqrt(5.19)])


def test_rmsprop_centered_by_hand(backend):
    # α = 0.75, g = 2: v = 1, ḡ = 0.5, v - ḡ² = 0.75
    g1, g2 = 2.0, -1.0
    for eps_mode, denom1 in [("outside_sqrt", math.sqrt(0.75) + 0.25), ("inside_sqrt", 1.0)]:
        rule = ro.rules.rmsprop(lr=0.1, alpha=0.75, eps=0.25, centered=True, eps_mode=eps_mode)
        p, state, tr = run(rule, backend, np.array([0.0]), [np.array([g1]), np.array([g2])])
        assert list(state.slots) == ["v", "g_bar"]
        close(tr[0]["g_bar"], [0.5])
        close(tr[0]["denom"], [denom1])
        v2 = 0.75 * 1.0 + 0.25 * 1.0
        gb2 = 0.75 * 0.5 + 0.25 * g2
        var2 = v2 - gb2**2
        denom2 = math.sqrt(var2) + 0.25 if eps_mode == "outside_sqrt" else math.sqrt(var2 + 0.25)
        close(tr[1]["g_bar"], [gb2])
        close(tr[1]["denom"], [denom2])
        close(p, [-0.1 * g1 / denom1 - 0.1 * g2 / denom2])


def test_rmsprop_momentum_by_hand(backend):
    # lr outside the buffer (torch): b = μ b + g/denom, θ -= γ b; the buffer starts at 0
    rule = ro.rules.rmsprop(lr=0.5, alpha=0.75, eps=0.44, momentum=0.5)
    p, state, tr = run(rule, backend, np.array([1.0]), [np.array([2.0]), np.array([4.0])])
    assert list(state.slots) == ["v", "b"]
    b1 = 2 / 1.44
    d2 = math.sqrt(4.75) + 0.44
    b2 = 0.5 * b1 + 4 / d2
    close(tr[0]["b"], [b1])
    close(tr[1]["b"], [b2])
    close(p, [1.0 - 0.5 * b1 - 0.5 * b2])


def test_rmsprop_lr_in_momentum_differs_only_under_lr_changes(backend):
    g = [np.array([2.0]), np.array([4.0])]
    torch_form = ro.rules.rmsprop(lr=0.5, alpha=0.75, eps=0.44, momentum=0.5)
    keras_form = torch_form.replace(lr_in_momentum=True)
    pt, _, _ = run(torch_form, backend, np.array([1.0]), g)
    pk, _, trk = run(keras_form, backend, np.array([1.0]), g)
    close(trk[0]["b"], [0.5 * 2 / 1.44])  # γ inside the buffer
    close(pk, pt, rtol=1e-15)
    # a learning-rate change between the steps: the Keras buffer remembers γ_1
    d2 = math.sqrt(4.75) + 0.44
    for rule, expected in [
        (torch_form, 1.0 - 0.5 * (2 / 1.44) - 0.25 * (0.5 * 2 / 1.44 + 4 / d2)),
        (keras_form, 1.0 - 0.5 * 2 / 1.44 - (0.5 * (0.5 * 2 / 1.44) + 0.25 * 4 / d2)),
    ]:
        p = backend.tree(np.array([1.0]))
        s = rule.init(p)
        p, s = rule.step(p, backend.tree(g[0]), s)
        p, s = rule.replace(lr=0.25).step(p, backend.tree(g[1]), s)
        close(backend.to_numpy(p), [expected])


def test_rmsprop_weight_decay_and_maximize(backend):
    # maximize negates g BEFORE the L2 term: g' = -g + λθ
    rule = ro.rules.rmsprop(lr=0.5, alpha=0.75, eps=0.44, weight_decay=0.5, maximize=True)
    p, _, tr = run(rule, backend, np.array([2.0]), [np.array([-3.0])])
    close(tr[0]["g"], [3.0 + 1.0])  # g' = 4: v = 0.25·16 = 4, denom = 2.44
    close(p, [2.0 - 0.5 * 4 / 2.44])


def test_rmsprop_lerp_matches_multiply_add():
    g = [np.array([2.0, -1.0, 0.3]), np.array([-1.0, 5.0, 0.2]), np.array([0.5, 0.5, -7.0])]
    for alpha in (0.99, 0.3):
        a = run(ro.rules.rmsprop(alpha=alpha, centered=True), _np(), np.zeros(3), g)[0]
        b = run(ro.rules.rmsprop(alpha=alpha, centered=True, ema="lerp"), _np(), np.zeros(3), g)[0]
        close(a, b, rtol=1e-14)


# ---------------------------------------------------------------------------------------
# Adagrad by hand
# ---------------------------------------------------------------------------------------


def test_adagrad_eps_placement_by_hand(backend):
    # g = 3, ε = 16: √s + ε = 19 (torch, Duchi) vs √(s + ε) = 5 (Keras)
    for mode, denom in [("outside_sqrt", 19.0), ("inside_sqrt", 5.0)]:
        rule = ro.rules.adagrad(lr=0.5, eps=16.0, eps_mode=mode)
        p, _, tr = run(rule, backend, np.array([1.0]), [np.array([3.0])])
        close(tr[0]["s"], [9.0])
        close(tr[0]["denom"], [denom])
        close(p, [1.0 - 0.5 * 3 / denom])


def test_adagrad_initial_accumulator_and_second_step(backend):
    # s_0 = 7: s_1 = 7 + 9 = 16, denom 4; s_2 = 16 + 20.25 = 36.25
    rule = ro.rules.adagrad(lr=0.5, eps=0.0, initial_accumulator_value=7.0)
    p0 = backend.tree(np.array([1.0, -1.0]))
    close(backend.to_numpy(rule.init(p0)["s"]), [7.0, 7.0])
    p, _, tr = run(rule, backend, np.array([1.0, -1.0]), [np.array([3.0, 0.0]), np.array([-4.5, 0.0])])
    close(tr[0]["s"], [16.0, 7.0])
    close(tr[1]["s"], [36.25, 7.0])
    close(p, [1.0 - 0.5 * 3 / 4 + 0.5 * 4.5 / math.sqrt(36.25), -1.0])


def test_adagrad_lr_decay_counts_steps_from_one(backend):
    # γ_t = γ / (1 + (t-1) η): γ, γ/1.5, γ/2 for η = 0.5 (the first step is undecayed)
    rule = ro.rules.adagrad(lr=0.3, lr_decay=0.5, eps=0.0)
    g = [np.array([2.0])] * 3
    p, state, tr = run(rule, backend, np.array([0.0]), g)
    assert [tr[i]["lr_t"] for i in range(3)] == [0.3, 0.3 / 1.5, 0.3 / 2.0]
    assert state.t == 3
    expected = -(0.3 * 2 / 2 + 0.2 * 2 / math.sqrt(8) + 0.15 * 2 / math.sqrt(12))
    close(p, [expected])


def test_adagrad_weight_decay_and_maximize(backend):
    rule = ro.rules.adagrad(lr=0.5, eps=0.0, weight_decay=1.0, maximize=True)
    p, _, tr = run(rule, backend, np.array([2.0]), [np.array([1.0])])
    close(tr[0]["g"], [-1.0 + 2.0])
    close(p, [2.0 - 0.5])


def test_adagrad_batched_initial_accumulator(backend):
    s0 = np.array([[0.0], [7.0]])
    batched = ro.rules.adagrad(lr=0.5, eps=0.0, initial_accumulator_value=s0)
    g = [np.array([[3.0, 1.0], [3.0, 1.0]])]
    p, _, _ = run(batched, backend, np.zeros((2, 2)), g)
    for k in range(2):
        one, _, _ = run(ro.rules.adagrad(lr=0.5, eps=0.0, initial_accumulator_value=float(s0[k, 0])), backend,
                        np.zeros(2), [g[0][k]])
        np.testing.assert_array_equal(p[k], one)


# ---------------------------------------------------------------------------------------
# Adadelta by hand
# ---------------------------------------------------------------------------------------


def test_adadelta_by_hand(backend):
    # ρ = 0.5, ε = 2, g = 2:  v = 2, RMS[g] = √(2+2) = 2, RMS[Δ]_0 = √(0+2), Δ = √2/2·2 = √2,
    # u = 0.5·2 = 1 (from Δ, not γΔ); θ -= γΔ
    rule = ro.rules.adadelta(lr=0.5, rho=0.5, eps=2.0)
    p, _, tr = run(rule, backend, np.array([1.0]), [np.array([2.0]), np.array([2.0])])
    close(tr[0]["v"], [2.0])
    close(tr[0]["rms_g"], [2.0])
    close(tr[0]["rms_delta"], [math.sqrt(2.0)])
    close(tr[0]["delta"], [math.sqrt(2.0)])
    close(tr[0]["u"], [1.0], rtol=1e-15)
    close(tr[0]["update"], [0.5 * math.sqrt(2.0)])
    # step 2: v = 0.5·2 + 0.5·4 = 3, RMS[g] = √5, RMS[Δ]_1 = √(1+2) = √3 (uses u_1)
    d2 = math.sqrt(3.0) / math.sqrt(5.0) * 2.0
    close(tr[1]["v"], [3.0])
    close(tr[1]["rms_delta"], [math.sqrt(3.0)])
    close(tr[1]["delta"], [d2])
    close(tr[1]["u"], [0.5 + 0.5 * d2 * d2])
    close(p, [1.0 - 0.5 * math.sqrt(2.0) - 0.5 * d2])


def test_adadelta_weight_decay_and_maximize(backend):
    rule = ro.rules.adadelta(rho=0.5, eps=2.0, weight_decay=0.5, maximize=True)
    p, _, tr = run(rule, backend, np.array([2.0]), [np.array([-1.0])])
    close(tr[0]["g"], [2.0])  # g' = 1 + 0.5·2
    close(p, [2.0 - math.sqrt(2.0)])


# ---------------------------------------------------------------------------------------
# cross-check with torch.optim (float64 to 1e-13; float32 to a few ulp)
# ---------------------------------------------------------------------------------------

TORCH_CASES = [
    ("rmsprop", "RMSprop", dict(lr=0.03, alpha=0.9, eps=1e-3, weight_decay=0.1, momentum=0.8, centered=True)),
    ("rmsprop", "RMSprop", dict(lr=0.03, alpha=0.9, eps=1e-3, maximize=True)),
    ("adagrad", "Adagrad", dict(lr=0.1, lr_decay=0.3, weight_decay=0.2, initial_accumulator_value=0.5, eps=1e-3)),
    ("adagrad", "Adagrad", dict(maximize=True)),
    ("adadelta", "Adadelta", dict(lr=0.7, rho=0.8, eps=1e-3, weight_decay=0.1, maximize=True)),
]


@pytest.mark.torch
@pytest.mark.parametrize("name,cls,hyper", TORCH_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(TORCH_CASES)])
def test_matches_torch_optim(name, cls, hyper):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    theta0 = rng.normal(size=(4, 3))
    grads = [rng.normal(size=(4, 3)) * 10.0 ** rng.integers(-3, 3) for _ in range(6)]
    for dtype, rtol in [(np.float64, 1e-13), (np.float32, 4e-6)]:
        ours = {"ema": "lerp"} if hyper.get("centered") else {}
        rule = ro.rules.get(name, **hyper, **ours)
        p = np.array(theta0, dtype=dtype)
        state = rule.init(p)
        tp = torch.nn.Parameter(torch.tensor(theta0, dtype=getattr(torch, np.dtype(dtype).name)))
        opt = getattr(torch.optim, cls)([tp], foreach=False, **hyper)
        for g in grads:
            g = g.astype(dtype)
            p, state = rule.step(p, g, state)
            tp.grad = torch.tensor(g)
            opt.step()
            np.testing.assert_allclose(p, tp.detach().numpy(), rtol=rtol, atol=rtol * 1e-3)
            assert p.dtype == dtype


# ---------------------------------------------------------------------------------------
# Lion
# ---------------------------------------------------------------------------------------


def test_lion_by_hand(backend):
    # β1 = 0.5, β2 = 0.9.  Step 1: c = 0.5 g, m_1 = 0.1 g = [1, -1, 0].
    # Step 2 with g = [-1.5, 0.5, 0]: c = 0.5 m + 0.5 g = [-0.25, -0.25, 0] (signs from β1!),
    # a β2-interpolation would give [+0.75, -0.85, 0]; m_2 = 0.9 m + 0.1 g = [0.75, -0.85, 0].
    rule = ro.rules.lion(lr=0.25, betas=(0.5, 0.9))
    g1, g2 = np.array([10.0, -10.0, 0.0]), np.array([-1.5, 0.5, 0.0])
    p, state, tr = run(rule, backend, np.array([1.0, 2.0, 3.0]), [g1, g2])
    close(tr[0]["c"], [5.0, -5.0, 0.0])
    close(tr[0]["update"], [0.25, -0.25, 0.0])
    close(tr[0]["m"], [1.0, -1.0, 0.0])
    close(tr[1]["c"], [-0.25, -0.25, 0.0])
    close(tr[1]["update"], [-0.25, -0.25, 0.0])
    close(tr[1]["m"], [0.75, -0.85, 0.0])
    close(p, [1.0, 2.5, 3.0])  # sign(0) = 0: the third coordinate never moves
    assert list(tr[0]) == ["t", "g", "c", "update", "m", "params"]


def test_lion_decoupled_weight_decay(backend):
    # θ <- θ(1 - γλ) - γ sign(c), with (1 - γλ) = 0.8; a zero gradient still decays
    rule = ro.rules.lion(lr=0.1, weight_decay=2.0)
    p, _, _ = run(rule, backend, np.array([1.0, -2.0, 4.0]), [np.array([3.0, 3.0, 0.0])])
    close(p, [0.8 - 0.1, -1.6 - 0.1, 3.2])


def test_lion_maximize(backend):
    rule = ro.rules.lion(lr=0.1, maximize=True)
    p, _, _ = run(rule, backend, np.array([1.0, 1.0]), [np.array([3.0, -3.0])])
    close(p, [1.1, 0.9])


# ---------------------------------------------------------------------------------------
# signSGD / Signum
# ---------------------------------------------------------------------------------------


def test_signsgd_plain_and_sign_of_zero(backend):
    rule = ro.rules.signsgd(lr=0.5)
    p, state, tr = run(rule, backend, np.array([1.0, 1.0, 1.0, 1.0]),
                       [np.array([1e-300, -7.0, 0.0, -0.0])])
    assert list(state.slots) == []
    close(tr[0]["update"], [0.5, -0.5, 0.0, 0.0])
    close(p, [0.5, 1.5, 1.0, 1.0])


def test_signsgd_torch_momentum_by_hand(backend):
    # μ = 0.5, τ = 0.5, torch start: b_1 = g_1 = [4, -1]; b_2 = 0.5 b_1 + 0.5 g_2
    # with g_2 = [-5, 3]: b_2 = [-0.5, 1] -> sign [-1, 1]
    rule = ro.rules.signsgd(lr=0.1, momentum=0.5, dampening=0.5)
    p, _, tr = run(rule, backend, np.zeros(2), [np.array([4.0, -1.0]), np.array([-5.0, 3.0])])
    close(tr[0]["b"], [4.0, -1.0])
    close(tr[1]["b"], [-0.5, 1.0])
    close(p, [-0.1 + 0.1, 0.1 - 0.1])


def test_signum_zero_start(backend):
    # Signum: m_1 = (1-β) g_1 = [2, -0.5]; m_2 = β m_1 + (1-β) g_2 = [-1.5, 1.25]
    # (with torch's start it would be b_2 = [-0.5, 1], so the buffer_init matters)
    rule = ro.rules.signsgd(lr=0.1, momentum=0.5, dampening=0.5, buffer_init="zero")
    p, _, tr = run(rule, backend, np.zeros(2), [np.array([4.0, -1.0]), np.array([-5.0, 3.0])])
    close(tr[0]["b"], [2.0, -0.5])
    close(tr[1]["b"], [-1.5, 1.25])
    close(p, [0.0, 0.0])


def test_signsgd_nesterov_weight_decay_maximize(backend):
    # maximize and L2: g' = -g + λθ; Nesterov d = g' + μ b
    rule = ro.rules.signsgd(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1.0, maximize=True)
    g1, g2 = np.array([-1.0, 3.0]), np.array([2.5, -0.5])
    p, _, tr = run(rule, backend, np.array([1.0, -1.0]), [g1, g2])
    gp1 = np.array([2.0, -4.0])
    close(tr[0]["g"], gp1)
    close(tr[0]["d"], gp1 + 0.9 * gp1)
    th1 = np.array([1.0, -1.0]) - 0.1 * np.sign(gp1)
    gp2 = -g2 + th1  # [-1.6, -0.4]
    b2 = 0.9 * gp1 + gp2  # [0.2, -4.0]
    close(tr[1]["b"], b2)
    d2 = gp2 + 0.9 * b2  # [-1.42, -4.0]
    close(tr[1]["d"], d2)
    close(p, th1 - 0.1 * np.sign(d2))


def test_signsgd_nesterov_needs_momentum():
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0 and dampening = 0"):
        ro.rules.signsgd(nesterov=True)
    with pytest.raises(ValueError, match="nesterov"):
        ro.rules.normalized_sgd(momentum=0.9, dampening=0.1, nesterov=True)


# ---------------------------------------------------------------------------------------
# normalised SGD
# ---------------------------------------------------------------------------------------

TREE = {"a": np.array([3.0, 0.0]), "b": np.array([[0.0, 4.0]])}


def test_normalized_sgd_global_norm(backend):
    rule = ro.rules.normalized_sgd(lr=0.5)
    p, _, tr = run(rule, backend, {"a": np.zeros(2), "b": np.zeros((1, 2))}, [TREE])
    close(p["a"], [-0.3, 0.0])
    close(p["b"], [[0.0, -0.4]])
    close(tr[0]["norm"]["a"], [5.0, 5.0])
    assert list(tr[0]) == ["t", "g", "d", "norm", "update", "params"]


def test_normalized_sgd_global_sqrt_n(backend):
    rule = ro.rules.normalized_sgd(lr=0.5, scale_by_sqrt_n=True)  # n = 4 over the tree
    p, _, _ = run(rule, backend, {"a": np.zeros(2), "b": np.zeros((1, 2))}, [TREE])
    close(p["a"], [-0.6, 0.0])
    close(p["b"], [[0.0, -0.8]])


def test_normalized_sgd_per_tensor_pan_li(backend):
    # Pan & Li: d·√n/‖d‖ per tensor: a: [3,0]·√2/3, b: [0,4]·√2/4
    rule = ro.rules.normalized_sgd(lr=0.5, norm="per_tensor", scale_by_sqrt_n=True)
    p, _, _ = run(rule, backend, {"a": np.zeros(2), "b": np.zeros((1, 2))}, [TREE])
    close(p["a"], [-0.5 * math.sqrt(2.0), 0.0])
    close(p["b"], [[0.0, -0.5 * math.sqrt(2.0)]])
    rule = ro.rules.normalized_sgd(lr=0.5, norm="per_tensor")
    p, _, _ = run(rule, backend, {"a": np.zeros(2), "b": np.zeros((1, 2))}, [TREE])
    close(p["a"], [-0.5, 0.0])
    close(p["b"], [[0.0, -0.5]])


def test_normalized_sgd_eps(backend):
    rule = ro.rules.normalized_sgd(lr=1.0, eps=5.0)  # d / (5 + 5)
    p, _, _ = run(rule, backend, {"a": np.zeros(2), "b": np.zeros((1, 2))}, [TREE])
    close(p["a"], [-0.3, 0.0])
    close(p["b"], [[0.0, -0.4]])


@pytest.mark.parametrize("norm", ["global", "per_tensor"])
def test_normalized_sgd_zero_gradient_is_a_zero_step(norm, backend):
    rule = ro.rules.normalized_sgd(lr=1.0, norm=norm, scale_by_sqrt_n=True)
    start = {"a": np.array([1.0, 2.0]), "b": np.array([[3.0, -4.0]])}
    g = {"a": np.zeros(2), "b": np.array([[0.0, 1.0]]) if norm == "per_tensor" else np.zeros((1, 2))}
    p, _, _ = run(rule, backend, start, [g])
    close(p["a"], [1.0, 2.0])  # no NaN: a zero d has a zero step
    close(p["b"], [[3.0, -4.0 - (math.sqrt(2.0) if norm == "per_tensor" else 0.0)]])


def test_normalized_sgd_momentum_before_normalisation(backend):
    # b_1 = g_1 = [3, 4] -> step -γ[0.6, 0.8]; b_2 = 0.5 b_1 + g_2 = [1.5, 2] + [-7.5, 6] = [-6, 8]
    rule = ro.rules.normalized_sgd(lr=1.0, momentum=0.5)
    p, _, tr = run(rule, backend, np.zeros(2), [np.array([3.0, 4.0]), np.array([-7.5, 6.0])])
    close(tr[1]["b"], [-6.0, 8.0])
    close(tr[1]["norm"], [10.0, 10.0])
    close(p, [-0.6 + 0.6, -0.8 - 0.8])


def test_normalized_sgd_batch_axes_errors():
    rule = ro.rules.normalized_sgd(batch_axes=2)
    with pytest.raises(ValueError, match=r"batch_axes=2 .* params\['w'\] has shape \(3,\)"):
        rule.init({"w": np.zeros(3)})
    rule = ro.rules.normalized_sgd(batch_axes=1)
    with pytest.raises(ValueError, match="share its first 1 axes"):
        rule.init({"w": np.zeros((3, 2)), "v": np.zeros((2, 2))})
    ro.rules.normalized_sgd(batch_axes=1, norm="per_tensor").init({"w": np.zeros((3, 2)), "v": np.zeros((2, 2))})
    with pytest.raises(TypeError, match="batch_axes must be an integer >= 0; got 1.5"):
        ro.rules.normalized_sgd(batch_axes=1.5)
    with pytest.raises(ValueError, match="batch_axes must be an integer >= 0; got -1"):
        ro.rules.normalized_sgd(batch_axes=-1)


# ---------------------------------------------------------------------------------------
# batched == separate, exactly
# ---------------------------------------------------------------------------------------

K = 3


def _batched_vs_separate(backend, make, batched_hyper, per_k, dtype, steps=4, tree=True, seed=0):
    """``make(**hyper)`` with batched hyper (K, 1) on (K, ·) params vs K separate runs."""
    rng = np.random.default_rng(seed)
    shapes = {"w": (K, 4), "v": (K, 2, 3)} if tree else {"w": (K, 5)}
    params = {k: rng.normal(size=s) for k, s in shapes.items()}
    grads = [{k: rng.normal(size=s) * 10.0 ** rng.integers(-2, 2) for k, s in shapes.items()} for _ in range(steps)]
    grads[1]["w"][0] = 0.0  # a zero gradient somewhere
    p_b, _, _ = run(make(**batched_hyper), backend, params, grads, dtype)
    for i in range(K):
        one = make(**per_k(i))
        p_i, _, _ = run(one, backend, {k: v[i] for k, v in params.items()},
                        [{k: v[i] for k, v in g.items()} for g in grads], dtype)
        for key in shapes:
            np.testing.assert_array_equal(p_b[key][i], p_i[key], err_msg=f"configuration {i}, {key}")


@pytest.mark.parametrize("norm", ["global", "per_tensor"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_normalized_sgd_batched_equals_separate(norm, dtype, backend):
    lr = np.array([0.1, 0.02, 0.3])
    mu = np.array([0.0, 0.9, 0.5])
    base = dict(norm=norm, scale_by_sqrt_n=True)

    def make(**h):
        return ro.rules.normalized_sgd(**base, **h)

    # batch_axes only: same hyper-parameters, K independent norms
    _batched_vs_separate(backend, make, dict(lr=0.1, momentum=0.9, batch_axes=1),
                         lambda i: dict(lr=0.1, momentum=0.9), dtype)
    # batched hyper-parameters too (μ = 0 in the first configuration: no buffer there)
    _batched_vs_separate(
        backend, make,
        dict(lr=lr[:, None], momentum=mu[:, None], batch_axes=1),
        lambda i: dict(lr=float(lr[i]), momentum=float(mu[i])),
        dtype, tree=False, seed=1,
    )


@pytest.mark.parametrize(
    "name,batched",
    [
        ("rmsprop", dict(lr=[0.1, 0.02, 0.3], momentum=[0.0, 0.9, 0.5], centered=True)),
        ("rmsprop", dict(alpha=[0.99, 0.5, 0.9], momentum=[0.0, 0.9, 0.5], lr_in_momentum=True, eps_mode="inside_sqrt")),
        ("adagrad", dict(lr=[0.1, 0.02, 0.3], lr_decay=[0.0, 0.1, 1.0], initial_accumulator_value=[0.0, 0.1, 3.0])),
        ("adadelta", dict(lr=[1.0, 0.5, 0.3], rho=[0.9, 0.95, 0.5], weight_decay=[0.0, 0.1, 0.2])),
        ("lion", dict(lr=[1e-4, 0.02, 0.3], betas=([0.9, 0.5, 0.0], 0.99), weight_decay=[0.0, 0.1, 1.0])),
        ("signsgd", dict(lr=[0.1, 0.02, 0.3], momentum=[0.0, 0.9, 0.5], dampening=[0.0, 0.9, 0.5])),
        ("signsgd", dict(momentum=[0.1, 0.9, 0.5], dampening=[0.1, 0.9, 0.5], buffer_init="zero")),
    ],
)
def test_batched_hyper_equals_separate(name, batched, backend):
    def one(v, i):
        if isinstance(v, list):
            return float(v[i])
        return tuple(one(x, i) for x in v) if isinstance(v, tuple) else v

    def lift(v):
        if isinstance(v, list):
            return np.array(v)[:, None]
        return tuple(lift(x) for x in v) if isinstance(v, tuple) else v

    def pick(h, i):
        return {k: one(v, i) for k, v in h.items()}

    lifted = {k: lift(v) for k, v in batched.items()}

    def make(**h):
        return ro.rules.get(name, **h)

    for dtype in (np.float64, np.float32):
        _batched_vs_separate(backend, make, lifted, lambda i: pick(batched, i), dtype, tree=False)


# ---------------------------------------------------------------------------------------
# invariances: the sign and unit-direction rules ignore the gradient's scale
# ---------------------------------------------------------------------------------------

_floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_subnormal=False)


@given(
    g1=st.lists(_floats, min_size=3, max_size=3),
    g2=st.lists(_floats, min_size=3, max_size=3),
    name=st.sampled_from(["lion", "signsgd", "normalized_sgd"]),
    momentum=st.sampled_from([0.0, 0.9]),
)
def test_scale_and_sign_invariance(g1, g2, name, momentum):
    # scaling every gradient by 4 changes no step (exactly: a power of two, no decay);
    # negating every gradient negates every step
    hyper = {"lr": 0.1} if name == "lion" else {"lr": 0.1, "momentum": momentum}
    if name == "normalized_sgd":
        hyper["norm"] = "per_tensor"
    rule = ro.rules.get(name, **hyper)
    start = np.array([1.0, -2.0, 0.5])
    grads = [np.array(g1), np.array(g2)]
    base, _, tr = run(rule, _np(), start, grads)
    scaled = run(rule, _np(), start, [4.0 * g for g in grads])[0]
    tr_flipped = run(rule, _np(), start, [-g for g in grads])[2]
    np.testing.assert_array_equal(scaled, base)
    for a, b in zip(tr, tr_flipped):
        np.testing.assert_array_equal(b["update"], -a["update"])


# ---------------------------------------------------------------------------------------
# zero gradients, dtypes, errors
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lion", "signsgd", "normalized_sgd", "rmsprop", "adagrad", "adadelta"])
def test_zero_gradient_leaves_params_and_stays_finite(name, backend):
    rule = ro.rules.get(name)
    p, state, _ = run(rule, backend, np.array([1.0, -2.0]), [np.zeros(2), np.zeros(2)])
    np.testing.assert_array_equal(p, [1.0, -2.0])
    for slot in state.slots.values():
        assert np.all(np.isfinite(backend.to_numpy(slot)))


@pytest.mark.parametrize("name", list(DEFAULTS))
def test_float32_stays_float32(name, backend):
    rule = ro.rules.get(name, **({"momentum": 0.9} if name in ("rmsprop", "signsgd", "normalized_sgd") else {}))
    p = backend.tree(np.array([1.0, -2.0, 0.5]), np.float32)
    state = rule.init(p)
    g = backend.tree(np.array([0.3, 0.0, -1.0]), np.float32)
    p2, state = rule.step(p, g, state)
    assert p2.dtype == p.dtype
    for slot in state.slots.values():
        assert slot.dtype == p.dtype


@pytest.mark.parametrize(
    "name,hyper,exc,match",
    [
        ("rmsprop", dict(alpha=1.5), ValueError, r"rmsprop: alpha must be in \[0, 1\); got 1.5"),
        ("rmsprop", dict(eps_mode="inside"), ValueError, r"eps_mode must be one of .* \(did you mean 'inside_sqrt'"),
        ("rmsprop", dict(lr=-1.0), ValueError, r"rmsprop: lr must be in \[0, inf\); got -1.0"),
        ("adagrad", dict(initial_accumulator_value=-0.1), ValueError, "initial_accumulator_value must be in"),
        ("adagrad", dict(lr_decay=True), TypeError, "lr_decay must be a real number"),
        ("adadelta", dict(rho=1.1), ValueError, r"adadelta: rho must be in \[0, 1\]; got 1.1"),
        ("lion", dict(betas=(1.0, 0.99)), ValueError, r"lion: beta1 must be in \[0, 1\); got 1.0"),
        ("lion", dict(betas=0.9), TypeError, "betas must be a pair"),
        ("signsgd", dict(dampening=2.0), ValueError, "dampening must be in"),
        ("signsgd", dict(buffer_init="zeros"), ValueError, "did you mean 'zero'"),
        ("normalized_sgd", dict(norm="tensor"), ValueError, "did you mean 'per_tensor'"),
        ("normalized_sgd", dict(eps=-1.0), ValueError, "eps must be in"),
    ],
)
def test_bad_hyper_parameters(name, hyper, exc, match):
    with pytest.raises(exc, match=match):
        ro.rules.get(name, **hyper)
