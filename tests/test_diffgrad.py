"""diffGrad: golden values (update-rules.md §5), hand-computed steps for every option, and
cross-checks against torch-optimizer 0.3.0 and pytorch_optimizer 4.1.0."""

import math

import numpy as np
import pytest

import refopt as ro
from conftest import GOLDEN_THETA0, golden_grad, golden_run

DG = ro.rules.diffgrad
THETA = GOLDEN_THETA0
G1 = golden_grad(THETA)
G2 = np.array([-0.5, 2.0, 0.25])

# torch-optimizer 0.3.0 = diffGrad_v2 = pytorch_optimizer >= 4.0.0 (the PyTorch code's ε placement)
ONE = [0.999010987, -1.999000045, 0.4990048448]
FIVE = [0.9970074445, -1.996992403, 0.4969984188]


def test_golden_values(backend):
    rule = DG(eps_mode="eps_hat")
    np.testing.assert_allclose(golden_run(rule, 1, backend), ONE, rtol=1e-9, atol=0)
    np.testing.assert_allclose(golden_run(rule, 5, backend), FIVE, rtol=1e-9, atol=1e-10)


def test_golden_values_paper_form(backend):
    # the paper's √v̂ + ε differs from the code's by O(ε): still the printed 10 digits here
    rule = DG()
    np.testing.assert_allclose(golden_run(rule, 1, backend), ONE, rtol=1e-9, atol=0)
    np.testing.assert_allclose(golden_run(rule, 5, backend), FIVE, rtol=1e-9, atol=1e-10)


def test_defaults():
    h = DG().hyper
    assert (h["lr"], h["betas"], h["eps"], h["weight_decay"]) == (1e-3, (0.9, 0.999), 1e-8, 0.0)
    assert (h["eps_mode"], h["weight_decouple"], h["eps_root"]) == ("after_bias_correction", False, 0.0)
    assert DG().slots() == ("m", "v", "g_prev")


def steps(rule, grads, theta=THETA):
    p = np.array(theta, dtype=np.float64)
    state = rule.init(p)
    trace = None
    for g in grads:
        p, state, trace = rule.trace(p, np.asarray(g, dtype=np.float64), state)
    return p, state, trace


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_first_step_uses_xi_of_the_first_gradient():
    lr, eps = 1e-2, 1e-8
    _, state, tr = steps(DG(lr=lr, eps=eps), [G1])
    xi = sigmoid(np.abs(G1))  # g_0 = 0
    np.testing.assert_allclose(tr["xi"], xi, rtol=1e-15)
    assert np.all(tr["xi"] > 0.5)
    m, v = 0.1 * G1, 0.001 * G1**2
    want = lr * xi * (m / 0.1) / (np.sqrt(v / 0.001) + eps)  # γ ξ m̂ / (√v̂ + ε)
    np.testing.assert_allclose(tr["update"], want, rtol=1e-15)
    np.testing.assert_allclose(tr["params"], THETA - want, rtol=1e-15)
    np.testing.assert_array_equal(state["g_prev"], G1)
    assert list(tr) == ["t", "bc1", "bc2", "sqrt_bc2", "step_size", "g", "m", "v", "xi", "m_hat", "v_hat",
                        "denom", "update", "params"]


def test_second_step_uses_the_gradient_change():
    lr, eps, b1, b2 = 1e-3, 1e-8, 0.9, 0.999
    _, _, tr = steps(DG(lr=lr, eps=eps), [G1, G2])
    xi = sigmoid(np.abs(G1 - G2))
    m = b1 * (1 - b1) * G1 + (1 - b1) * G2
    v = b2 * (1 - b2) * G1**2 + (1 - b2) * G2**2
    bc1, bc2 = 1 - b1**2, 1 - b2**2
    np.testing.assert_allclose(tr["xi"], xi, rtol=1e-15)
    np.testing.assert_allclose(tr["update"], lr * xi * (m / bc1) / (np.sqrt(v / bc2) + eps), rtol=1e-14)


def test_constant_gradient_has_half_friction():
    _, _, tr = steps(DG(), [G1, G1, G1])
    np.testing.assert_array_equal(tr["xi"], np.full(3, 0.5))


@pytest.mark.parametrize("mode", ["after_bias_correction", "eps_hat"])
def test_eps_placement(mode):
    # a tiny gradient makes ε visible: √v̂ + ε (paper) vs √v + ε with γ√bc2/bc1 (PyTorch code)
    lr, eps = 1e-3, 1e-3
    g = np.full(3, 1e-3)
    _, _, tr = steps(DG(lr=lr, eps=eps, eps_mode=mode), [g], theta=np.zeros(3))
    xi, v = sigmoid(1e-3), 0.001 * 1e-6
    if mode == "eps_hat":
        want = lr * math.sqrt(0.001) / 0.1 * xi * (0.1 * g) / (math.sqrt(v) + eps)
    else:
        want = lr * xi * g / (math.sqrt(v / 0.001) + eps)
    np.testing.assert_allclose(tr["update"], want, rtol=1e-15)
    # the two differ by the effective ε: ε/√bc2 = 31.6 ε at t = 1
    other = "eps_hat" if mode != "eps_hat" else "after_bias_correction"
    assert not np.allclose(steps(DG(lr=lr, eps=eps, eps_mode=other), [g], theta=np.zeros(3))[2]["update"], want,
                           rtol=1e-3)


def test_eps_root_inside_the_square_root():
    eps, root = 1e-8, 1e-2
    _, _, tr = steps(DG(eps=eps, eps_root=root, eps_mode="eps_hat"), [G1])
    np.testing.assert_allclose(tr["denom"], np.sqrt(0.001 * G1**2 + root) + eps, rtol=1e-15)


def test_coupled_weight_decay_feeds_the_friction_and_g_prev():
    lr, wd = 1e-3, 0.3
    _, state, tr = steps(DG(lr=lr, weight_decay=wd), [G1])
    ga = G1 + wd * THETA
    np.testing.assert_allclose(tr["g"], ga, rtol=1e-15)
    np.testing.assert_allclose(tr["xi"], sigmoid(np.abs(ga)), rtol=1e-15)
    np.testing.assert_allclose(state["g_prev"], ga, rtol=1e-15)


def test_decoupled_weight_decay():
    lr, wd = 1e-2, 0.3
    plain = steps(DG(lr=lr), [G1])[2]
    dec = steps(DG(lr=lr, weight_decay=wd, weight_decouple=True), [G1])
    np.testing.assert_allclose(dec[0], THETA * (1 - lr * wd) - plain["update"], rtol=1e-15)
    np.testing.assert_array_equal(dec[1]["g_prev"], G1)
    fixed = steps(DG(lr=lr, weight_decay=wd, weight_decouple=True, fixed_decay=True), [G1])[0]
    np.testing.assert_allclose(fixed, THETA * (1 - wd) - plain["update"], rtol=1e-15)


def test_maximize():
    up = steps(DG(maximize=True), [G1, G2])[2]["update"]
    down = steps(DG(), [-G1, -G2])[2]["update"]
    np.testing.assert_array_equal(up, down)


def test_g_prev_is_a_copy(backend):
    # the official diffGrad.py kept a reference to p.grad (ξ ≡ 0.5 bug); the state must not
    # alias the caller's gradient
    rule = DG()
    p = backend.asarray(THETA)
    g = backend.asarray(G1)
    backend.freeze(p), backend.freeze(g)
    state = rule.init(p)
    backend.freeze(dict(state.slots))
    p1, state = rule.step(p, g, state)
    assert state["g_prev"] is not g
    np.testing.assert_array_equal(backend.to_numpy(state["g_prev"]), G1)
    np.testing.assert_array_equal(backend.to_numpy(g), G1)
    np.testing.assert_array_equal(backend.to_numpy(p), THETA)


def test_float32(backend):
    rule = DG(weight_decay=0.1)
    p32 = golden_run(rule, 8, backend, dtype=np.float32)
    assert p32.dtype == np.float32
    np.testing.assert_allclose(p32, golden_run(rule, 8), rtol=1e-5, atol=1e-6)


def test_batched_equals_separate():
    lrs = np.array([[1e-3], [1e-2]])
    wds = np.array([[0.0], [0.1]])
    rule = DG(lr=lrs, weight_decay=wds)
    P = np.tile(THETA, (2, 1))
    state = rule.init(P)
    for _ in range(6):
        P, state = rule.step(P, golden_grad(P), state)
    for k in range(2):
        np.testing.assert_array_equal(P[k], golden_run(DG(lr=float(lrs[k, 0]), weight_decay=float(wds[k, 0])), 6))


@pytest.mark.parametrize(
    "hyper,exc,text",
    [
        (dict(eps_mode="inside_sqrt"), ValueError, "eps_mode"),
        (dict(eps_root=-1e-15), ValueError, "eps_root"),
        (dict(lr=-1.0), ValueError, "lr"),
        (dict(weight_decouple=1), TypeError, "weight_decouple"),
        (dict(rectify=True), TypeError, "unknown hyper-parameter"),
    ],
)
def test_bad_hyper_parameters(hyper, exc, text):
    with pytest.raises(exc, match=text):
        DG(**hyper)


# ---------------------------------------------------------------------------------------
# cross-checks (float64, 20 steps)
# ---------------------------------------------------------------------------------------


def _torch_run(make, steps_, dtype="float64"):
    torch = pytest.importorskip("torch")
    dt = getattr(torch, dtype)
    p = torch.tensor(THETA, dtype=dt, requires_grad=True)
    opt = make([p])
    for _ in range(steps_):
        p.grad = torch.tensor(golden_grad(p.detach().double().numpy()), dtype=dt)
        opt.step()
    return p.detach().numpy().copy()


def _check(make, rule, steps_=20):
    np.testing.assert_allclose(golden_run(rule, steps_), _torch_run(make, steps_), rtol=1e-12, atol=0)
    np.testing.assert_allclose(golden_run(rule, steps_, dtype=np.float32), _torch_run(make, steps_, "float32"),
                               rtol=1e-6, atol=1e-7)


TO = [dict(), dict(weight_decay=0.1), dict(betas=(0.5, 0.9), eps=1e-3, lr=1e-2)]


@pytest.mark.parametrize("kw", TO, ids=[str(k) for k in TO])
def test_torch_optimizer_030(kw):
    mod = pytest.importorskip("torch_optimizer")
    _check(lambda ps: mod.DiffGrad(ps, **kw), DG(eps_mode="eps_hat", **kw))


KOZISTR = [dict(), dict(weight_decay=0.1), dict(weight_decay=0.1, weight_decouple=False),
           dict(weight_decay=0.1, fixed_decay=True), dict(maximize=True), dict(eps=1e-3)]


@pytest.mark.parametrize("foreach", [False, None])
@pytest.mark.parametrize("kw", KOZISTR, ids=[str(k) for k in KOZISTR])
def test_pytorch_optimizer_41(kw, foreach):
    mod = pytest.importorskip("pytorch_optimizer")
    ref = dict(eps_mode="eps_hat", eps_root=1e-15, ema="lerp", weight_decouple=True)
    ref.update(kw)
    _check(lambda ps: mod.DiffGrad(ps, foreach=foreach, **kw), DG(**ref))
