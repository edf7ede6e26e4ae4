"""AdaBelief: golden values (update-rules.md §5), hand-computed steps for every option, and
cross-checks against adabelief-pytorch 0.2.1, torch-optimizer 0.3.0 and pytorch_optimizer 4.1.0."""

import contextlib
import io
import math

import numpy as np
import pytest

import refopt as ro
from conftest import GOLDEN_THETA0, golden_grad, golden_run

AB = ro.rules.adabelief

# ---------------------------------------------------------------------------------------
# golden values, every backend
# ---------------------------------------------------------------------------------------

GOLDEN = [
    # adabelief-pytorch 0.2.1 (ε=1e-16, decouple, rectify=False) = optax 0.2.8 = pytorch_optimizer 4.1.0
    (dict(), [0.9988888889, -1.998888889, 0.4988888889], [0.993870508, -1.99387044, 0.4938710771]),
    # 0.2.1 with ε=1e-8, rectify=False, coupled λ=0.1
    (dict(eps=1e-8, weight_decouple=False, weight_decay=0.1), [0.9988888892, -1.998888889, 0.4988888891],
     [0.9938705043, -1.993870428, 0.4938710786]),
    # 0.2.1 defaults (rectify=True): equals RAdam() for t <= 5
    (dict(rectify=True), [0.9955, -1.99, 0.494675], [0.9776456946, -1.950668801, 0.473684462]),
]


@pytest.mark.parametrize("hyper,one,five", GOLDEN, ids=["default", "coupled-eps1e-8", "rectify"])
def test_golden_values(hyper, one, five, backend):
    rule = AB(**hyper)
    np.testing.assert_allclose(golden_run(rule, 1, backend), one, rtol=1e-9, atol=0)
    np.testing.assert_allclose(golden_run(rule, 5, backend), five, rtol=1e-9, atol=1e-10)


def test_defaults_are_the_paper_algorithm():
    rule = AB()
    h = rule.hyper
    assert (h["lr"], h["betas"], h["eps"], h["eps_root"]) == (1e-3, (0.9, 0.999), 1e-16, None)
    assert (h["rectify"], h["amsgrad"], h["eps_mode"], h["residual"]) == (False, False, "accumulated", "m_t")
    assert (h["weight_decay"], h["weight_decouple"], h["threshold"]) == (0.0, True, "rho>=5")
    assert rule.slots() == ("m", "s")
    assert AB(amsgrad=True).slots() == ("m", "s", "s_max")


# ---------------------------------------------------------------------------------------
# hand-computed steps (float64, NumPy)
# ---------------------------------------------------------------------------------------

THETA = GOLDEN_THETA0
G1 = golden_grad(THETA)


def steps(rule, grads, theta=THETA):
    """Run ``rule`` on a fixed gradient sequence; return the last (params, state, trace)."""
    p = np.array(theta, dtype=np.float64)
    state = rule.init(p)
    trace = None
    for g in grads:
        p, state, trace = rule.trace(p, np.asarray(g, dtype=np.float64), state)
    return p, state, trace


def test_first_step_by_hand():
    eps, lr, b1, b2 = 1e-8, 1e-2, 0.9, 0.999
    _, state, tr = steps(AB(lr=lr, eps=eps), [G1])
    m = (1 - b1) * G1
    s = (1 - b2) * (G1 - m) ** 2 + eps  # residual with the UPDATED m, ε accumulated
    denom = np.sqrt(s) / math.sqrt(1 - b2) + eps
    update = lr / (1 - b1) * m / denom
    np.testing.assert_allclose(tr["m"], m, rtol=1e-15)
    np.testing.assert_allclose(state["s"], s, rtol=1e-15)
    np.testing.assert_allclose(tr["s_hat"], s / (1 - b2), rtol=1e-15)
    np.testing.assert_allclose(tr["m_hat"], G1, rtol=1e-15)
    np.testing.assert_allclose(tr["denom"], denom, rtol=1e-15)
    np.testing.assert_allclose(tr["params"], THETA - update, rtol=1e-15)
    # the residual is 0.9 g at t = 1, so ŝ_1 = 0.81 g² + ε/(1-β2) and the step is ≈ γ/0.9
    np.testing.assert_allclose(tr["update"], lr / 0.9 * np.sign(G1), rtol=1e-4)
    assert list(tr) == ["t", "bc1", "bc2", "sqrt_bc2", "step_size", "g", "m", "s", "m_hat", "s_hat", "denom",
                        "update", "params"]


def test_second_step_by_hand():
    eps, lr, b1, b2 = 1e-8, 1e-3, 0.9, 0.999
    g2 = np.array([-0.5, 2.0, 0.25])
    _, state, tr = steps(AB(lr=lr, eps=eps, betas=(b1, b2)), [G1, g2])
    m1 = (1 - b1) * G1
    s1 = (1 - b2) * (G1 - m1) ** 2 + eps
    m2 = b1 * m1 + (1 - b1) * g2
    s2 = b2 * s1 + (1 - b2) * (g2 - m2) ** 2 + eps
    np.testing.assert_allclose(state["m"], m2, rtol=1e-15)
    np.testing.assert_allclose(state["s"], s2, rtol=1e-15)
    bc1, bc2 = 1 - b1**2, 1 - b2**2
    np.testing.assert_allclose(tr["update"], lr / bc1 * m2 / (np.sqrt(s2) / math.sqrt(bc2) + eps), rtol=1e-15)


def test_accumulated_eps_adds_exactly_eps_per_step():
    # with a fixed gradient sequence m does not depend on s, so the two states differ by
    # ε (1 + β2 + … + β2^{t-1}) exactly
    eps, b2 = 1e-8, 0.999
    grads = [np.array([1e-3, -2e-3, 5e-4]), np.array([-1e-3, 1e-3, 0.0]), np.array([2e-3, 0.0, -1e-3])]
    for t in (1, 2, 3):
        _, acc, _ = steps(AB(eps=eps), grads[:t])
        _, none, _ = steps(AB(eps=eps, eps_mode="none"), grads[:t])
        np.testing.assert_allclose(acc["s"] - none["s"], eps * sum(b2**k for k in range(t)), rtol=1e-9)
        np.testing.assert_array_equal(acc["m"], none["m"])


def test_eps_mode_none_is_adam_with_the_belief():
    eps, lr = 1e-8, 1e-3
    _, state, tr = steps(AB(eps=eps, lr=lr, eps_mode="none"), [G1])
    s = 0.001 * (0.9 * G1) ** 2
    np.testing.assert_allclose(state["s"], s, rtol=1e-15)
    np.testing.assert_allclose(tr["update"], lr * G1 / (np.sqrt(s) / math.sqrt(0.001) + eps), rtol=1e-15)


def test_eps_root_separates_the_inner_eps():
    # eps_root=0 accumulates nothing: the same as eps_mode="none"
    a = golden_run(AB(eps=1e-8, eps_root=0.0), 5)
    b = golden_run(AB(eps=1e-8, eps_mode="none"), 5)
    np.testing.assert_array_equal(a, b)
    # eps_root=None means "the same as eps"
    np.testing.assert_array_equal(golden_run(AB(eps=1e-8, eps_root=1e-8), 5), golden_run(AB(eps=1e-8), 5))
    _, state, _ = steps(AB(eps=0.0, eps_root=1e-6), [G1])
    np.testing.assert_allclose(state["s"], 0.001 * (0.9 * G1) ** 2 + 1e-6, rtol=1e-15)


def test_inside_sqrt_old_optax():
    # optax < 0.1.0: ν not accumulated, √(ν̂ + ε_root) + ε with eps=0, eps_root=1e-16 (and g - m_{t-1})
    lr = 1e-3
    rule = AB(lr=lr, eps=0.0, eps_root=1e-4, eps_mode="inside_sqrt", residual="m_prev")
    _, state, tr = steps(rule, [G1])
    s = 0.001 * G1**2  # residual g_1 - m_0 = g_1
    np.testing.assert_allclose(state["s"], s, rtol=1e-15)
    np.testing.assert_allclose(tr["denom"], np.sqrt(s / 0.001 + 1e-4), rtol=1e-15)
    np.testing.assert_allclose(tr["update"], lr * G1 / np.sqrt(G1**2 + 1e-4), rtol=1e-15)


def test_residual_previous_m_second_step():
    g2 = np.array([-0.5, 2.0, 0.25])
    eps = 1e-8
    _, state, _ = steps(AB(eps=eps, residual="m_prev"), [G1, g2])
    m1 = 0.1 * G1
    s1 = 0.001 * G1**2 + eps
    s2 = 0.999 * s1 + 0.001 * (g2 - m1) ** 2 + eps
    np.testing.assert_allclose(state["s"], s2, rtol=1e-15)


@pytest.mark.parametrize("where", ["before_max", "after_max"])
def test_amsgrad_eps_placement(where):
    eps, b1, b2 = 1e-6, 0.9, 0.999
    g2 = np.array([1e-3, -1e-3, 1e-3])  # a small second gradient: the maximum is the first s
    _, state, tr = steps(AB(eps=eps, amsgrad=True, amsgrad_eps=where), [G1, g2])
    m1 = (1 - b1) * G1
    m2 = b1 * m1 + (1 - b1) * g2
    raw1 = (1 - b2) * (G1 - m1) ** 2
    if where == "before_max":  # official 0.2.x: s += ε, then the max
        s1 = raw1 + eps
        s2 = b2 * s1 + (1 - b2) * (g2 - m2) ** 2 + eps
        smax = np.maximum(s1, s2)
    else:  # 0.0.5 / 0.1.0 / torch-optimizer: s without ε; s_max = max(s_max, s) + ε every step
        s1 = raw1
        s2 = b2 * s1 + (1 - b2) * (g2 - m2) ** 2
        smax = np.maximum(raw1 + eps, s2) + eps
    np.testing.assert_allclose(state["s"], s2, rtol=1e-15)
    np.testing.assert_allclose(state["s_max"], smax, rtol=1e-15)
    np.testing.assert_allclose(tr["denom"], np.sqrt(smax) / math.sqrt(1 - b2**2) + eps, rtol=1e-15)


def test_amsgrad_after_max_drifts_by_eps_per_step():
    eps = 1e-3
    grads = [G1] + [np.zeros(3)] * 4
    _, state, _ = steps(AB(eps=eps, amsgrad=True, amsgrad_eps="after_max"), grads)
    s1 = 0.001 * (0.9 * G1) ** 2
    # s decays, so the first maximum stays the maximum and collects ε five times
    np.testing.assert_allclose(state["s_max"], s1 + 5 * eps, rtol=1e-13)


def test_rectification_thresholds_at_the_boundary():
    # β2 = 0.999: ρ_5 = 4.996, ρ_6 = 5.994
    grads = [G1] * 6
    p = np.array(THETA)
    rules = {th: AB(rectify=True, threshold=th) for th in ("rho>4", "rho>=5", "rho>5")}
    states = {th: r.init(p) for th, r in rules.items()}
    seen = {th: [] for th in rules}
    for g in grads:
        for th, r in rules.items():
            _, states[th], tr = r.trace(p, g, states[th])
            seen[th].append(bool(tr["rectified"]))
            rho = tr["rho_t"]
    assert abs(rho - 5.994) < 1e-3
    assert seen["rho>4"] == [False] * 4 + [True, True]
    assert seen["rho>=5"] == seen["rho>5"] == [False] * 5 + [True]
    tr5 = AB(rectify=True).trace(p, G1, ro.rules.State("adabelief", 4, states["rho>=5"].slots))[2]
    assert abs(tr5["rho_t"] - 4.996) < 1e-3 and not tr5["rectified"]


def _rectified_run(**hyper):
    """Six steps with gradients G1·k; returns the state after 5 steps and the 6th trace."""
    rule = AB(rectify=True, **hyper)
    p = np.array(THETA)
    state = rule.init(p)
    for k in range(5):
        g = G1 * (1.0 + 0.5 * k) * (-1) ** k
        p, state = rule.step(p, g, state)
    g6 = G1 * 0.3
    return p, state, g6, rule.trace(p, g6, state)[2]


@pytest.mark.parametrize("form", ["raw", "raw_amsgrad", "bias_corrected"])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_rectified_denominators(form, amsgrad):
    eps, lr, b1, b2 = 1e-4, 1e-3, 0.9, 0.999
    p5, st5, g6, tr = _rectified_run(eps=eps, lr=lr, rectified_denom=form, amsgrad=amsgrad)
    t = 6
    bc1, bc2 = 1 - b1**t, 1 - b2**t
    rho_inf = 2 / (1 - b2) - 1
    rho = rho_inf - 2 * t * b2**t / bc2
    r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
    np.testing.assert_allclose(tr["r_t"], r, rtol=1e-14)
    m = b1 * st5["m"] + (1 - b1) * g6
    s = b2 * st5["s"] + (1 - b2) * (g6 - m) ** 2 + eps
    s_used = np.maximum(st5["s_max"], s) if amsgrad else s
    if form == "raw":  # official: √s + ε, amsgrad ignored, √bc2 folded into the step
        want = lr * r * math.sqrt(bc2) / bc1 * m / (np.sqrt(s) + eps)
    elif form == "raw_amsgrad":  # pytorch_optimizer
        want = lr * r * math.sqrt(bc2) / bc1 * m / (np.sqrt(s_used) + eps)
    else:  # 0.0.5 / torch-optimizer: the usual denominator
        want = lr * r / bc1 * m / (np.sqrt(s_used) / math.sqrt(bc2) + eps)
    np.testing.assert_allclose(tr["update"], want, rtol=1e-13)
    np.testing.assert_allclose(tr["params"], p5 - want, rtol=1e-15)


@pytest.mark.parametrize("phase,factor", [("m_hat", 1.0 / 0.1), ("m", 1.0)])
def test_sgd_phase(phase, factor):
    lr = 1e-2
    _, _, tr = steps(AB(rectify=True, lr=lr, sgd_phase=phase), [G1])
    m = 0.1 * G1
    np.testing.assert_allclose(tr["update"], lr * factor * m, rtol=1e-15)
    # the SGD phase is not normalised: the step is γ·g (m̂ = g at t = 1) or γ·0.1·g
    assert not tr["rectified"]


def test_no_sgd_phase_keeps_params_but_moves_moments_and_decay():
    lr, wd = 1e-2, 0.5
    p, state, tr = steps(AB(rectify=True, lr=lr, degenerated_to_sgd=False, weight_decay=wd), [G1, G1])
    np.testing.assert_allclose(p, THETA * (1 - lr * wd) ** 2, rtol=1e-15)
    np.testing.assert_array_equal(tr["update"], np.zeros(3))
    assert np.all(state["m"] != 0)


def test_weight_decay_forms():
    lr, wd, eps = 1e-2, 0.3, 1e-8
    base = steps(AB(lr=lr, eps=eps), [G1])[2]["update"]
    dec = steps(AB(lr=lr, eps=eps, weight_decay=wd), [G1])[2]
    np.testing.assert_allclose(dec["params"], THETA * (1 - lr * wd) - base, rtol=1e-15)
    fixed = steps(AB(lr=lr, eps=eps, weight_decay=wd, fixed_decay=True), [G1])[2]
    np.testing.assert_allclose(fixed["params"], THETA * (1 - wd) - base, rtol=1e-15)
    coupled = steps(AB(lr=lr, eps=eps, weight_decay=wd, weight_decouple=False), [G1])[2]
    np.testing.assert_allclose(coupled["g"], G1 + wd * THETA, rtol=1e-15)
    np.testing.assert_allclose(coupled["m"], 0.1 * (G1 + wd * THETA), rtol=1e-15)


def test_decay_after_moments_makes_coupled_l2_a_no_op():
    # adabelief-pytorch 0.1.0 (verified with the package): coupled L2 after the moments does nothing
    off = AB(eps=1e-8, weight_decouple=False, weight_decay=0.5, decay_placement="after_moments")
    np.testing.assert_array_equal(golden_run(off, 5), golden_run(AB(eps=1e-8), 5))
    # decoupled decay does not care where it is placed
    a = AB(weight_decay=0.5, lr=1e-2, decay_placement="after_moments")
    np.testing.assert_array_equal(golden_run(a, 5), golden_run(a.replace(decay_placement="before_moments"), 5))


def test_nesterov_first_step():
    lr, eps, b1 = 1e-3, 1e-8, 0.9
    _, _, tr = steps(AB(lr=lr, eps=eps, nesterov=True), [G1])
    m = (1 - b1) * G1
    m_hat = b1 * m / (1 - b1**2) + (1 - b1) * G1 / (1 - b1)
    np.testing.assert_allclose(tr["m_hat"], m_hat, rtol=1e-15)
    np.testing.assert_allclose(tr["update"], lr * m_hat / tr["denom"], rtol=1e-15)


def test_maximize_is_descent_on_the_negated_gradient():
    g2 = np.array([-0.5, 2.0, 0.25])
    up = steps(AB(maximize=True, eps=1e-8), [G1, g2])[2]["update"]
    down = steps(AB(eps=1e-8), [-G1, -g2])[2]["update"]
    np.testing.assert_array_equal(up, down)


def test_lerp_form_is_within_rounding():
    a = golden_run(AB(ema="lerp"), 20)
    b = golden_run(AB(), 20)
    np.testing.assert_allclose(a, b, rtol=1e-13)


def test_float32_and_inputs_untouched(backend):
    rule = AB(rectify=True, amsgrad=True, weight_decay=0.1)
    p32 = golden_run(rule, 8, backend, dtype=np.float32)
    assert p32.dtype == np.float32
    np.testing.assert_allclose(p32, golden_run(rule, 8), rtol=2e-5, atol=1e-6)
    p = backend.asarray(THETA)
    g = backend.asarray(G1)
    state = rule.init(p)
    backend.freeze(dict(state.slots)), backend.freeze(p), backend.freeze(g)
    rule.step(p, g, state)
    np.testing.assert_array_equal(backend.to_numpy(p), THETA)
    np.testing.assert_array_equal(backend.to_numpy(g), G1)


def _batched_vs_separate(batched, separate, exact, **common):
    rule = AB(**batched, **common)
    P = np.tile(THETA, (2, 1))
    state = rule.init(P)
    for _ in range(8):
        P, state = rule.step(P, golden_grad(P), state)
    for k in range(2):
        want = golden_run(AB(**separate[k], **common), 8)
        if exact:
            np.testing.assert_array_equal(P[k], want)
        else:
            np.testing.assert_allclose(P[k], want, rtol=1e-14)


def test_batched_hyper_parameters_equal_separate_runs():
    col = lambda a, b: np.array([[a], [b]])  # noqa: E731
    _batched_vs_separate(
        dict(lr=col(1e-3, 1e-2), eps=col(1e-16, 1e-8), weight_decay=col(0.0, 0.1)),
        [dict(lr=1e-3, eps=1e-16, weight_decay=0.0), dict(lr=1e-2, eps=1e-8, weight_decay=0.1)],
        exact=True, rectify=True, amsgrad=True,
    )
    # batched betas: rectification switches per entry.  Only to rounding: the host computes β^t
    # with NumPy's power, which differs from Python's float ** int by 1 ulp for some t
    # (0.999**7, reported to the lead; RAdam shows the same)
    _batched_vs_separate(
        dict(betas=(0.9, col(0.999, 0.99))),
        [dict(betas=(0.9, 0.999)), dict(betas=(0.9, 0.99))],
        exact=False, rectify=True, amsgrad=True,
    )


# ---------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hyper,exc,text",
    [
        (dict(eps_root=-1.0), ValueError, "eps_root"),
        (dict(eps_root="x"), TypeError, "eps_root"),
        (dict(eps_mode="accumulate"), ValueError, "did you mean 'accumulated'"),
        (dict(threshold="rho>6"), ValueError, "threshold"),
        (dict(rectify=True, nesterov=True), ValueError, "nesterov"),
        (dict(rectify=True, eps_mode="inside_sqrt"), ValueError, "rectified_denom"),
        (dict(betas=(0.9, 1.0)), ValueError, "beta2"),
        (dict(n_sma_threshold=5), TypeError, "unknown hyper-parameter"),
    ],
)
def test_bad_hyper_parameters(hyper, exc, text):
    with pytest.raises(exc, match=text.replace("(", r"\(")):
        AB(**hyper)


def test_rectify_with_inside_sqrt_and_bias_corrected_denominator_is_allowed():
    rule = AB(rectify=True, eps_mode="inside_sqrt", rectified_denom="bias_corrected")
    assert np.all(np.isfinite(golden_run(rule, 7)))


# ---------------------------------------------------------------------------------------
# cross-checks against the packages (float64, 20 steps)
# ---------------------------------------------------------------------------------------


def _torch_run(make, steps_, dtype="float64"):
    torch = pytest.importorskip("torch")
    dt = getattr(torch, dtype)
    p = torch.tensor(THETA, dtype=dt, requires_grad=True)
    opt = make([p])
    for _ in range(steps_):
        p.grad = torch.tensor(golden_grad(p.detach().double().numpy()), dtype=dt)
        with contextlib.redirect_stdout(io.StringIO()):
            opt.step()
    return p.detach().numpy().copy()


def _check(make, rule, steps_=20):
    want = _torch_run(make, steps_)
    np.testing.assert_allclose(golden_run(rule, steps_), want, rtol=1e-12, atol=0)
    want32 = _torch_run(make, steps_, "float32")
    np.testing.assert_allclose(golden_run(rule, steps_, dtype=np.float32), want32, rtol=1e-6, atol=1e-7)


OFFICIAL = [
    dict(rectify=False),
    dict(),
    dict(eps=1e-8, rectify=False, weight_decouple=False, weight_decay=0.1),
    dict(amsgrad=True, rectify=False),
    dict(amsgrad=True),
    dict(weight_decay=0.1, fixed_decay=True, rectify=False),
    dict(weight_decay=0.1),
    dict(degenerated_to_sgd=False),
    dict(betas=(0.5, 0.9), eps=1e-8),
]


@pytest.mark.parametrize("kw", OFFICIAL, ids=[str(k) for k in OFFICIAL])
def test_adabelief_pytorch_021(kw):
    mod = pytest.importorskip("adabelief_pytorch")

    def make(ps):
        with contextlib.redirect_stdout(io.StringIO()):
            return mod.AdaBelief(ps, print_change_log=False, **kw)

    _check(make, AB(**{"rectify": True, **kw}))


# torch-optimizer 0.3.0 ports adabelief-pytorch 0.0.5
TO_CONVENTIONS = dict(eps=1e-8, weight_decouple=False, threshold="rho>4", sgd_phase="m",
                      rectified_denom="bias_corrected", amsgrad_eps="after_max")
TORCH_OPTIMIZER = [dict(), dict(weight_decay=0.1), dict(rectify=True), dict(amsgrad=True),
                   dict(amsgrad=True, rectify=True), dict(weight_decouple=True, weight_decay=0.1)]


@pytest.mark.parametrize("kw", TORCH_OPTIMIZER, ids=[str(k) for k in TORCH_OPTIMIZER])
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_torch_optimizer_030(kw):
    mod = pytest.importorskip("torch_optimizer")
    _check(lambda ps: mod.AdaBelief(ps, **kw), AB(**{**TO_CONVENTIONS, **kw}))


KOZISTR = [dict(), dict(rectify=True), dict(ams_bound=True), dict(ams_bound=True, rectify=True),
           dict(weight_decay=0.1, weight_decouple=False), dict(maximize=True, weight_decay=0.1),
           dict(rectify=True, degenerated_to_sgd=False), dict(foreach=False, eps=1e-8)]


@pytest.mark.parametrize("kw", KOZISTR, ids=[str(k) for k in KOZISTR])
def test_pytorch_optimizer_41(kw):
    mod = pytest.importorskip("pytorch_optimizer")
    ref = {"ema": "lerp", "rectified_denom": "raw_amsgrad"}
    for k, v in kw.items():
        if k == "ams_bound":
            ref["amsgrad"] = v
        elif k != "foreach":
            ref[k] = v
    _check(lambda ps: mod.AdaBelief(ps, **kw), AB(**ref))
