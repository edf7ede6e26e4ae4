"""Gradient transforms (refopt.transforms) and the clipped rules clipped_sgd / clipped_adam.

The coordinate-wise operator follows clipping.md §3.1 (worked example, truncation, the
degenerate cases); the rules follow §3.2 (clip before momentum; Adam clips the L2-augmented
gradient and keeps the unclipped one in v).
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refopt as ro
from refopt import transforms as T

WORKED_G = np.array([5, -4, 3, 0.5, -0.1, 2, 1, -1, 0.2, 0.3])
WORKED = [
    (0.1, 4.0, [4, -4, 3, 0.5, -0.1, 2, 1, -1, 0.2, 0.3]),
    (0.2, 3.0, [3, -3, 3, 0.5, -0.1, 2, 1, -1, 0.2, 0.3]),
    (0.5, 1.0, [1, -1, 1, 0.5, -0.1, 1, 1, -1, 0.2, 0.3]),
]


def np_clip_top(leaves, c, s=1.0, nonzero=False):
    """An independent NumPy reading of clipping.md §3.1 (float64 leaves)."""
    if c == 0:
        return [np.array(x) for x in leaves], math.inf
    a = np.sort(np.abs(np.concatenate([np.ravel(x) for x in leaves])))[::-1]
    if nonzero:
        a = a[a > 0]
    k = int(a.size * c)
    tau = 0.0 if k >= a.size else float(a[k])
    tau *= s
    return [np.where(np.abs(x) < tau, x, np.sign(x) * tau) for x in leaves], tau


# ---------------------------------------------------------------------------------------
# the operator
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("c,tau,expected", WORKED)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_worked_example(backend, c, tau, expected, dtype):
    g = backend.freeze(backend.asarray(WORKED_G, dtype))
    out, t = T.clip_top_fraction(g, c)
    assert t == tau and isinstance(t, float)
    np.testing.assert_array_equal(backend.to_numpy(out), np.asarray(expected, dtype=dtype))
    assert backend.to_numpy(out).dtype == dtype
    np.testing.assert_array_equal(backend.to_numpy(g), WORKED_G.astype(dtype))  # input untouched


def test_truncation_of_the_rank(backend):
    # int(100 * 0.29) == 28 (the float64 product is 28.999999999999996): τ is the 29th largest
    assert int(100 * 0.29) == 28
    g = np.arange(100, 0, -1.0) * np.where(np.arange(100) % 2, -1.0, 1.0)  # magnitudes 100, 99, ..., 1
    out, tau = T.clip_top_fraction(backend.asarray(g), 0.29)
    assert tau == 72.0
    out = backend.to_numpy(out)
    np.testing.assert_array_equal(np.abs(out), np.minimum(np.abs(g), 72.0))
    assert int(np.sum(np.abs(out) < np.abs(g))) == 28  # entries actually changed: the 28 above τ


def test_degenerate_fractions(backend):
    g = backend.asarray(WORKED_G)
    same, tau = T.clip_top_fraction(g, 0)
    assert same is g and tau == math.inf
    zeros, tau = T.clip_top_fraction({"a": g, "b": backend.asarray([[7.0, -1e-9]])}, 1)
    assert tau == 0.0
    for leaf in backend.tree_to_numpy(zeros).values():
        np.testing.assert_array_equal(leaf, 0.0)


def test_zero_threshold_option(backend):
    # 7 of 10 entries are exactly 0 and c = 0.4 > 1 - 0.7: the code's τ is 0
    g = np.array([5.0, -3.0, 2.0, 0, 0, 0, 0, 0, 0, 0])
    out, tau = T.clip_top_fraction(backend.asarray(g), 0.4)  # default: the authors' code
    assert tau == 0.0
    np.testing.assert_array_equal(backend.to_numpy(out), 0.0)
    out, tau = T.clip_top_fraction(backend.asarray(g), 0.4, zero_threshold="nonzero")
    assert tau == 3.0  # N' = 3 non-zeros, k = int(1.2) = 1
    np.testing.assert_array_equal(backend.to_numpy(out), [3.0, -3.0, 2.0, 0, 0, 0, 0, 0, 0, 0])
    # without exact zeros both variants are the code
    _, tau_all = T.clip_top_fraction(backend.asarray(WORKED_G), 0.2)
    _, tau_nz = T.clip_top_fraction(backend.asarray(WORKED_G), 0.2, zero_threshold="nonzero")
    assert tau_all == tau_nz == 3.0
    # c = 1 still zeroes everything with the guard
    out, tau = T.clip_top_fraction(backend.asarray(g), 1.0, zero_threshold="nonzero")
    assert tau == 0.0


def test_threshold_is_pooled_over_the_tree(backend):
    tree = {"w": np.array([[1.0, -2.0], [3.0, 4.0]]), "b": np.array([100.0, -50.0])}
    out, tau = T.clip_top_fraction(backend.tree(tree), 0.5)
    # N = 6, k = 3: magnitudes 100, 50, 4, 3, 2, 1 -> τ = 3, so w's 4 is clipped by b's scale
    assert tau == 3.0
    out = backend.tree_to_numpy(out)
    np.testing.assert_array_equal(out["w"], [[1.0, -2.0], [3.0, 3.0]])
    np.testing.assert_array_equal(out["b"], [3.0, -3.0])
    alone, tau_w = T.clip_top_fraction(backend.asarray(tree["w"]), 0.5)  # w alone: τ = 2
    assert tau_w == 2.0
    # the rule pools the same way: clipped_sgd with lr = 1 subtracts C(g)
    params = {"w": np.zeros((2, 2)), "b": np.zeros(2)}
    rule = ro.rules.clipped_sgd(lr=1.0, clip_fraction=0.5)
    p, _, trace = rule.trace(backend.tree(params), backend.tree(tree), rule.init(backend.tree(params)))
    assert trace["tau"] == 3.0
    np.testing.assert_array_equal(backend.to_numpy(p["w"]), -out["w"])
    np.testing.assert_array_equal(backend.to_numpy(p["b"]), -out["b"])


def test_threshold_scale_is_applied_in_float64_then_rounded(backend):
    g = np.array([0.1, -0.7, 0.33, 0.9, -0.05], dtype=np.float32)
    out, tau = T.clip_top_fraction(backend.asarray(g), 0.4, threshold_scale=0.7)
    assert tau == float(np.float32(0.33)) * 0.7  # k = 2 -> 0.33 (as float32), scaled on the host
    t32 = np.float32(tau)
    np.testing.assert_array_equal(backend.to_numpy(out), np.clip(g, -t32, t32))


@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=40),
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=10),
    st.floats(0.0, 1.0),
    st.sampled_from([1.0, 0.5, 2.0]),
    st.booleans(),
)
def test_matches_numpy_reading(xs, ys, c, s, nonzero):
    leaves = [np.array(xs), np.array(ys).reshape(1, -1)]
    out, tau = T.clip_top_fraction(leaves, c, threshold_scale=s, zero_threshold="nonzero" if nonzero else "zero_all")
    ref, ref_tau = np_clip_top(leaves, c, s, nonzero)
    assert tau == ref_tau
    for o, r, g in zip(out, ref, leaves):
        np.testing.assert_array_equal(o, r)
        assert np.all(np.abs(o) <= np.abs(g)) and np.all(o * g >= 0)  # shrinks, keeps the sign
    neg, _ = T.clip_top_fraction([-x for x in leaves], c, threshold_scale=s)
    plain, _ = T.clip_top_fraction(leaves, c, threshold_scale=s)
    for a, b in zip(neg, plain):
        np.testing.assert_array_equal(a, -b)  # C is odd
    if all(np.all(x != 0) for x in leaves):  # no zeros: both variants are the code
        _, tau2 = T.clip_top_fraction(leaves, c, threshold_scale=s, zero_threshold="nonzero")
        assert tau2 == T.clip_top_fraction(leaves, c, threshold_scale=s)[1]


def test_batched_threshold_equals_separate(backend):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((3, 4, 2))
    b = rng.standard_normal((3, 5))
    b[2, :] = 0.0
    c = np.array([0.1, 0.5, 0.8])
    for zt in ("zero_all", "nonzero"):
        out, tau = T.clip_top_fraction(
            {"w": backend.asarray(w), "b": backend.asarray(b)}, c.reshape(3, 1), batch_axes=1, zero_threshold=zt
        )
        assert tau.shape == (3,)
        for i in range(3):
            one, t1 = T.clip_top_fraction(
                {"w": backend.asarray(w[i]), "b": backend.asarray(b[i])}, float(c[i]), zero_threshold=zt
            )
            assert tau[i] == t1
            for key in ("w", "b"):
                np.testing.assert_array_equal(backend.to_numpy(out[key])[i], backend.to_numpy(one[key]))


def test_fixed_threshold_transforms(backend):
    g = {"a": backend.asarray([3.0, -4.0]), "b": backend.asarray([[12.0]])}  # global norm 13
    out = backend.tree_to_numpy(T.clip_by_value(g, 3.5))
    np.testing.assert_array_equal(out["a"], [3.0, -3.5])
    np.testing.assert_array_equal(out["b"], [[3.5]])
    same, n = T.clip_by_global_norm(g, 20.0)
    assert float(backend.to_numpy(n)) == 13.0
    np.testing.assert_array_equal(backend.to_numpy(same["a"]), [3.0, -4.0])  # optax: exact select
    out, n = T.clip_by_global_norm(g, 6.5)
    np.testing.assert_array_equal(backend.to_numpy(out["a"]), [(3.0 / 13.0) * 6.5, (-4.0 / 13.0) * 6.5])
    out, n = T.clip_by_global_norm(g, 6.5, convention="torch")
    coef = 6.5 / (13.0 + 1e-6)
    np.testing.assert_allclose(backend.to_numpy(out["b"]), [[12.0 * coef]], rtol=1e-15)
    out, n = T.clip_by_global_norm(g, 20.0, convention="torch")  # coef clamped at 1
    np.testing.assert_array_equal(backend.to_numpy(out["b"]), [[12.0]])
    zero, n = T.clip_by_global_norm({"a": backend.asarray([0.0, 0.0])}, 1.0)
    np.testing.assert_array_equal(backend.to_numpy(zero["a"]), [0.0, 0.0])


def test_fixed_threshold_transforms_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    leaves = [rng.standard_normal((4, 3)) * 5, rng.standard_normal(7)]
    for dtype in (torch.float64, torch.float32):
        ts = [torch.tensor(x, dtype=dtype) for x in leaves]
        ps = [torch.nn.Parameter(t.clone()) for t in ts]
        for p, t in zip(ps, ts):
            p.grad = t.clone()
        total = torch.nn.utils.clip_grad_norm_(ps, 2.0, foreach=False)
        out, n = T.clip_by_global_norm([t.clone() for t in ts], 2.0, convention="torch")
        rtol = 1e-14 if dtype == torch.float64 else 1e-6
        np.testing.assert_allclose(n.numpy(), total.numpy(), rtol=rtol)
        for o, p in zip(out, ps):
            np.testing.assert_allclose(o.numpy(), p.grad.numpy(), rtol=rtol, atol=0)
        for p, t in zip(ps, ts):
            p.grad = t.clone()
        torch.nn.utils.clip_grad_value_(ps, 1.5)
        for o, p in zip(T.clip_by_value(list(ts), 1.5), ps):
            np.testing.assert_array_equal(o.numpy(), p.grad.numpy())


def test_transform_errors():
    g = np.ones(3)
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\]; got 1.5"):
        T.clip_top_fraction(g, 1.5)
    with pytest.raises(ValueError, match="zero_threshold must be one of"):
        T.clip_top_fraction(g, 0.1, zero_threshold="nonzeros")
    with pytest.raises(ValueError, match="batch_axes=1 needs every array to share"):
        T.clip_top_fraction([np.ones((2, 3)), np.ones((3, 3))], 0.1, batch_axes=1)
    with pytest.raises(ValueError, match="set batch_axes"):
        T.clip_top_fraction(np.ones((2, 3)), np.array([[0.1], [0.2]]))
    with pytest.raises(TypeError, match="real floating"):
        T.clip_top_fraction(np.ones(3, dtype=np.int64), 0.1)
    with pytest.raises(ValueError, match="max_norm must be in"):
        T.clip_by_global_norm(g, 0.0)
    with pytest.raises(ValueError, match="convention must be one of"):
        T.clip_by_global_norm(g, 1.0, convention="jax")


# ---------------------------------------------------------------------------------------
# the rules
# ---------------------------------------------------------------------------------------


def _problem(seed, steps, dtype=np.float64, batch=None):
    rng = np.random.default_rng(seed)
    lead = () if batch is None else (batch,)
    params = {"w": rng.standard_normal((*lead, 3, 2)).astype(dtype), "b": rng.standard_normal((*lead, 4)).astype(dtype)}
    grads = []
    for _ in range(steps):
        g = {"w": rng.standard_normal((*lead, 3, 2)), "b": rng.standard_normal((*lead, 4)) * 10}
        g["w"][..., 0, 0] = 0.0
        grads.append({k: v.astype(dtype) for k, v in g.items()})
    return params, grads


def _run(rule, backend, params, grads):
    p = backend.tree(params)
    state = rule.init(p)
    for g in grads:
        p, state = rule.step(backend.freeze(p), backend.freeze(backend.tree(g)), state)
    return backend.tree_to_numpy(p), {k: backend.tree_to_numpy(v) for k, v in state.slots.items()}


SGD_HYPER = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.1),
    dict(lr=0.05, momentum=0.5, nesterov=True, weight_decay=0.01, maximize=True),
]
ADAM_HYPER = [
    dict(),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.01, amsgrad=True, maximize=True),
    dict(lr=0.01, betas=(0.5, 0.9), ema="lerp"),
]


@pytest.mark.parametrize("hyper", SGD_HYPER)
def test_clip_fraction_zero_is_sgd(backend, hyper):
    params, grads = _problem(1, 4, np.float32)
    p1, s1 = _run(ro.rules.clipped_sgd(clip_fraction=0.0, **hyper), backend, params, grads)
    p2, s2 = _run(ro.rules.sgd(**hyper), backend, params, grads)
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])
    assert s1.keys() == s2.keys()
    for name in s1:
        for k in s1[name]:
            np.testing.assert_array_equal(s1[name][k], s2[name][k])


@pytest.mark.parametrize("hyper", ADAM_HYPER)
def test_clip_fraction_zero_is_adam(backend, hyper):
    params, grads = _problem(2, 4, np.float32)
    p1, s1 = _run(ro.rules.clipped_adam(clip_fraction=0.0, **hyper), backend, params, grads)
    p2, s2 = _run(ro.rules.adam(**hyper), backend, params, grads)
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])
    for name in s1:
        for k in s1[name]:
            np.testing.assert_array_equal(s1[name][k], s2[name][k])


def _np_clipped_sgd(params, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                    maximize=False, clip_fraction=0.1, zero_threshold="zero_all"):
    keys = list(params)
    p = {k: params[k].copy() for k in keys}
    buf = None
    for t, g in enumerate(grads, 1):
        g = [(-1 if maximize else 1) * g[k] for k in keys]
        ghat, _ = np_clip_top(g, clip_fraction, nonzero=zero_threshold == "nonzero")
        ghat = [x + weight_decay * p[k] for x, k in zip(ghat, keys)]
        if momentum:
            buf = ghat if t == 1 else [momentum * b + (1 - dampening) * x for b, x in zip(buf, ghat)]
            d = [x + momentum * b for x, b in zip(ghat, buf)] if nesterov else buf
        else:
            d = ghat
        p = {k: p[k] - lr * x for k, x in zip(keys, d)}
    return p


def _np_clipped_adam(params, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, clip_fraction=0.5):
    keys = list(params)
    p = {k: params[k].copy() for k in keys}
    m = [np.zeros_like(p[k]) for k in keys]
    v = [np.zeros_like(p[k]) for k in keys]
    b1, b2 = betas
    for t, g in enumerate(grads, 1):
        g = [g[k] + weight_decay * p[k] for k in keys]
        gc, _ = np_clip_top(g, clip_fraction)
        m = [b1 * mi + (1 - b1) * x for mi, x in zip(m, gc)]
        v = [b2 * vi + (1 - b2) * x * x for vi, x in zip(v, g)]
        p = {
            k: p[k] - lr * (mi / (1 - b1**t)) / (np.sqrt(vi / (1 - b2**t)) + eps)
            for k, mi, vi in zip(keys, m, v)
        }
    return p


@pytest.mark.parametrize("hyper", [dict(h, clip_fraction=c) for h in SGD_HYPER for c in (0.1, 0.5)]
                         + [dict(lr=0.1, momentum=0.9, clip_fraction=0.6, zero_threshold="nonzero")])
def test_clipped_sgd_matches_the_algorithm(backend, hyper):
    params, grads = _problem(5, 5)
    grads[2]["b"][:] = 0.0
    got, _ = _run(ro.rules.clipped_sgd(**hyper), backend, params, grads)
    want = _np_clipped_sgd(params, grads, **hyper)
    for k in got:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("hyper", [dict(), dict(lr=0.01, weight_decay=0.3, clip_fraction=0.2), dict(lr=0.1, clip_fraction=1.0)])
def test_clipped_adam_matches_the_algorithm(backend, hyper):
    params, grads = _problem(6, 5)
    got, _ = _run(ro.rules.clipped_adam(**hyper), backend, params, grads)
    want = _np_clipped_adam(params, grads, **hyper)
    for k in got:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-15)


def test_clipped_adam_first_step(backend):
    params, grads = _problem(7, 1)
    lr, eps = 0.01, 1e-8
    rule = ro.rules.clipped_adam(lr=lr, eps=eps)
    p, state, trace = rule.trace(backend.tree(params), backend.tree(grads[0]), rule.init(backend.tree(params)))
    cg, tau = np_clip_top([grads[0]["w"], grads[0]["b"]], 0.5)
    assert trace["tau"] == tau
    for k, c in zip(("w", "b"), cg):
        g = grads[0][k]
        np.testing.assert_array_equal(backend.to_numpy(trace["g_clip"][k]), c)
        step = params[k] - backend.to_numpy(p[k])
        np.testing.assert_allclose(step, lr * c / (np.abs(g) + eps), rtol=1e-12, atol=1e-18)
        clipped = np.abs(g) > tau
        assert np.all(np.abs(step[clipped]) < lr)
        np.testing.assert_array_equal(backend.to_numpy(state["v"][k]), (1 - 0.999) * g * g)  # unclipped


def test_trace_names_and_order(numpy_backend):
    params, grads = _problem(8, 1)
    rule = ro.rules.clipped_sgd(lr=0.1, momentum=0.9)
    _, _, tr = rule.trace(params, grads[0], rule.init(params))
    assert list(tr) == ["t", "tau", "g", "g_clip", "g_hat", "b", "d", "update", "params"]
    rule = ro.rules.clipped_adam()
    _, _, tr = rule.trace(params, grads[0], rule.init(params))
    assert list(tr)[:2] == ["t", "bc1"] and "tau" in tr
    assert list(tr)[list(tr).index("tau"):] == ["tau", "g", "g_clip", "m", "v", "m_hat", "v_hat", "denom", "update", "params"]


@pytest.mark.parametrize("name", ["clipped_sgd", "clipped_adam"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batched_equals_separate_runs(backend, name, dtype):
    K = 3
    params, grads = _problem(9, 4, dtype, batch=K)
    for g in grads:
        g["b"][2] = 0.0
        g["w"][2, 1] = 0.0
    fractions = np.array([0.1, 0.5, 0.9])
    lrs = np.array([0.1, 0.05, 0.2])
    extra = dict(momentum=0.9, weight_decay=0.01) if name == "clipped_sgd" else dict(weight_decay=0.01)
    for zt in ("zero_all", "nonzero"):
        # batched hyper-parameters of shape (K, 1) need every parameter array to be (K, n)
        bparams = {"w": params["w"].reshape(K, 6), "b": params["b"]}
        bgrads = [{"w": g["w"].reshape(K, 6), "b": g["b"]} for g in grads]
        rule = ro.rules.get(name, lr=lrs.reshape(K, 1), clip_fraction=fractions.reshape(K, 1), batch_axes=1,
                            zero_threshold=zt, **extra)
        got, _ = _run(rule, backend, bparams, bgrads)
        for i in range(K):
            one = ro.rules.get(name, lr=float(lrs[i]), clip_fraction=float(fractions[i]), zero_threshold=zt, **extra)
            want, _ = _run(one, backend, {k: v[i] for k, v in bparams.items()}, [{k: v[i] for k, v in g.items()} for g in bgrads])
            for k in want:
                np.testing.assert_array_equal(got[k][i], want[k])


def test_rule_errors():
    with pytest.raises(ValueError, match=r"clipped_sgd: clip_fraction must be in \[0, 1\]"):
        ro.rules.clipped_sgd(clip_fraction=-0.1)
    with pytest.raises(ValueError, match="clipped_adam: clip_fraction has shape .* set batch_axes"):
        ro.rules.clipped_adam(clip_fraction=np.array([[0.1], [0.5]]))
    with pytest.raises(ValueError, match="clipped_sgd: nesterov=True needs momentum > 0"):
        ro.rules.clipped_sgd(nesterov=True)
    with pytest.raises(ValueError, match="did you mean 'nonzero'"):
        ro.rules.clipped_sgd(zero_threshold="non_zero")
    with pytest.raises(TypeError, match="batch_axes must be an integer"):
        ro.rules.clipped_adam(batch_axes=1.0)
    rule = ro.rules.clipped_sgd(batch_axes=1)
    params = {"w": np.ones((2, 3)), "b": np.ones(3)}
    with pytest.raises(ValueError, match="batch_axes=1 needs every array to share"):
        rule.step(params, params, rule.init(params))
    sgd_state = ro.rules.sgd(momentum=0.9).init(params)
    with pytest.raises(ValueError, match="state was made by the rule 'sgd'"):
        ro.rules.clipped_sgd(momentum=0.9).step(params, params, sgd_state)


def test_defaults_are_the_papers_settings():
    assert ro.rules.clipped_sgd().clip_fraction == 0.1
    assert ro.rules.clipped_adam().clip_fraction == 0.5
    assert ro.rules.clipped_adam().betas == (0.9, 0.999) and ro.rules.clipped_adam().eps == 1e-8
    assert ro.rules.clipped_sgd().threshold_scale == 1.0 and ro.rules.clipped_sgd().zero_threshold == "zero_all"
