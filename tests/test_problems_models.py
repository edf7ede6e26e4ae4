"""refopt.problems' neural models (transformer, CNN), the character corpus, hvp and example_batch.

Gradients are checked against torch autograd (float64: 1e-10 relative in the max norm; float32:
‖g32 − g64‖∞ <= F32_BOUND · ‖g64‖∞, about 170 float32 ulps of the largest entry, which covers
the rounding of the log-sum-exp, LayerNorm and the sums over up to 1024 positions), and every
hvp against torch's double backward (the exact ones -- softmax regression, MLP, CNN, quadratic
clients, the transformer -- to 1e-10; the float64 central difference, ``method="difference"``,
to 1e-6).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

import refopt.problems as P

F32_BOUND = 1e-5
FD_RTOL = 1e-6


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(np.max(np.abs(np.asarray(b))), 1e-300))


# -- torch references: the same flat layouts, written with torch.nn.functional ----------------


def _torch_transformer(p, theta, X, y):
    import torch
    import torch.nn.functional as F

    w = {n: theta[..., a:b].reshape(s) for n, s, a, b in p.layout}
    B, T = X.shape
    D, H = p.width, p.heads
    d = D // H
    x = F.embedding(X, w["tok"]) + w["pos"][:T]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for i in range(p.layers):
        def g(n, i=i):
            return w[f"{i}.{n}"]

        h = F.layer_norm(x, (D,), g("ln1_g"), g("ln1_b"), eps=1e-5)
        q, k, v = F.linear(h, g("qkv_w"), g("qkv_b")).split(D, dim=-1)
        q, k, v = (t.reshape(B, T, H, d).transpose(1, 2) for t in (q, k, v))
        S = (q @ k.transpose(-1, -2) / math.sqrt(d)).masked_fill(~causal, float("-inf"))
        o = (S.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + F.linear(o, g("o_w"), g("o_b"))
        h2 = F.layer_norm(x, (D,), g("ln2_g"), g("ln2_b"), eps=1e-5)
        x = x + F.linear(F.gelu(F.linear(h2, g("fc1_w"), g("fc1_b")), approximate="tanh"), g("fc2_w"), g("fc2_b"))
    x = F.layer_norm(x, (D,), w["lnf_g"], w["lnf_b"], eps=1e-5)
    logits = F.linear(x, w["head_w"], w["head_b"])
    return F.cross_entropy(logits.reshape(B * T, -1), y.reshape(-1))


def _torch_penalty(p, theta):
    if p.l2 == 0.0:
        return 0.0
    if p.penalty == "squared":
        return 0.5 * p.l2 * (theta * theta).sum()
    return p.l2 * theta.norm()


def _torch_cnn(p, theta, X, y):
    import torch
    import torch.nn.functional as F

    W1, b1, W2, b2, W3, b3 = torch.split(theta, list(p._sizes))
    x = X.reshape(-1, 1, 8, 8)
    x = F.max_pool2d(F.relu(F.conv2d(x, W1.reshape(p.c1, 1, 3, 3), b1, padding=1)), 2)
    x = F.max_pool2d(F.relu(F.conv2d(x, W2.reshape(p.c2, p.c1, 3, 3), b2, padding=1)), 2)
    logits = F.linear(x.flatten(1), W3.reshape(p.num_classes, -1), b3)
    return F.cross_entropy(logits, y) + _torch_penalty(p, theta)


def _torch_mlp(p, theta, X, y):
    import torch
    import torch.nn.functional as F

    F_, H, C = p.features, p.hidden, p.num_classes
    W1, b1, W2, b2 = torch.split(theta, [H * F_, H, C * H, C])
    a = F.linear(X, W1.reshape(H, F_), b1)
    h = torch.tanh(a) if p.activation == "tanh" else F.relu(a)
    return F.cross_entropy(F.linear(h, W2.reshape(C, H), b2), y) + _torch_penalty(p, theta)


def _torch_softmax(p, theta, X, y):
    import torch
    import torch.nn.functional as F

    C, F_ = p.num_classes, p.features
    W, b = torch.split(theta, [C * F_, C])
    return F.cross_entropy(F.linear(X, W.reshape(C, F_), b), y) + _torch_penalty(p, theta)


def _torch_quadratic(p, theta, X, y):
    import torch

    r = theta - torch.as_tensor(np.array(p.optima))
    A = torch.as_tensor(p.hessians())
    return 0.5 * torch.einsum("mi,mij,mj->", r, A, r)


TORCH_LOSS = {"transformer": _torch_transformer, "cnn": _torch_cnn, "mlp": _torch_mlp,
              "softmax_regression": _torch_softmax}

# (builder, batch size); small sizes keep the file fast, the default transformer is covered too
MODELS = {
    "transformer": (lambda: P.transformer(), 3),
    "transformer_2x4": (lambda: P.transformer(context=12, width=16, heads=4, layers=2, mlp=24), 3),
    "cnn": (lambda: P.cnn(), 16),
    "cnn_norm": (lambda: P.cnn((4, 6), l2=0.05, penalty="norm"), 8),
}
ALL = {
    **MODELS,
    "softmax_l2": (lambda: P.softmax_regression(6, 4, l2=0.3), 9),
    "softmax_norm": (lambda: P.softmax_regression(6, 4, l2=0.3, penalty="norm"), 9),
    "mlp_tanh": (lambda: P.mlp(6, 5, 4, l2=0.1), 9),
    "mlp_relu": (lambda: P.mlp(6, 5, 4, activation="relu", l2=0.1, penalty="norm"), 9),
}


def _setup(name, seed=0):
    build, b = ALL[name]
    p = build()
    X, y = p.example_batch(b, seed)
    theta = p.init(seed) + 0.05 * np.random.default_rng(seed + 1).standard_normal(p.dim)
    return p, theta, X, y


def _torch_grad_hvp(p, theta, v, X, y):
    torch = pytest.importorskip("torch")
    t = torch.tensor(theta, requires_grad=True)
    Xt = torch.as_tensor(X) if X is not None else None
    yt = torch.as_tensor(y) if y is not None else None
    fn = _torch_quadratic if p.name == "quadratic_clients" else TORCH_LOSS[p.name]
    loss = fn(p, t, Xt, yt)
    (g,) = torch.autograd.grad(loss, t, create_graph=True)
    (hv,) = torch.autograd.grad(g, t, grad_outputs=torch.as_tensor(v))
    return loss.item(), g.detach().numpy(), hv.numpy()


# -- sizes and layouts -----------------------------------------------------------------------


def test_sizes_and_names():
    t = P.get("transformer")
    # V·D + T·D + (2D + 3D² + 3D + D² + D + 2D + MD + M + DM + D) + 2D + V·D + V
    assert t.dim == 95 * 32 + 64 * 32 + (64 + 3168 + 1056 + 64 + 8352) + 64 + 95 * 32 + 95 == 20991
    assert P.get("cnn").dim == 80 + 1168 + 650 == 1898
    assert {"transformer", "cnn", "mlp", "softmax_regression"} <= set(P.names())
    assert t.layout[0][:2] == ("tok", (95, 32)) and t.layout[-1][:2] == ("head_b", (95,))
    theta = t.init(3)
    parts = t.unflatten(theta)
    assert np.all(parts["0.ln1_g"] == 1.0) and np.all(parts["0.qkv_b"] == 0.0)
    assert 0.015 < float(np.std(parts["tok"])) < 0.025
    np.testing.assert_array_equal(theta, t.init(3))
    with pytest.raises(ValueError, match="multiple of heads"):
        P.transformer(width=10, heads=3)
    with pytest.raises(ValueError, match="did you mean 'cnn'"):
        P.get("cnm")


# -- gradients against torch -----------------------------------------------------------------


@pytest.mark.parametrize("name", list(ALL))
def test_gradient_matches_torch_float64(name):
    p, theta, X, y = _setup(name)
    loss_t, g_t, _ = _torch_grad_hvp(p, theta, np.zeros_like(theta), X, y)
    loss, g = p.loss_grad(theta, X, y)
    assert float(loss) == pytest.approx(loss_t, rel=1e-12)
    assert _rel(g, g_t) < 1e-10
    assert float(p.loss(theta, X, y)) == float(loss)


@pytest.mark.parametrize("name", list(MODELS))
def test_float32_stays_float32_within_bound(name):
    p, theta, X, y = _setup(name)
    X32 = X.astype(np.float32) if X.dtype.kind == "f" else X
    loss32, g32 = p.loss_grad(theta.astype(np.float32), X32, y)
    assert loss32.dtype == np.float32 and g32.dtype == np.float32
    loss, g = p.loss_grad(theta, X, y)
    assert _rel(g32, g) <= F32_BOUND
    assert float(loss32) == pytest.approx(float(loss), rel=1e-5)


# -- Hessian-vector products -----------------------------------------------------------------


@pytest.mark.parametrize("name", list(ALL))
def test_hvp_matches_torch_double_backward(name):
    p, theta, X, y = _setup(name)
    v = np.random.default_rng(5).standard_normal(p.dim)
    _, _, hv_t = _torch_grad_hvp(p, theta, v, X, y)
    assert _rel(p.hvp(theta, v, X, y), hv_t) < 1e-10                            # exact
    assert _rel(p.hvp(theta, v, X, y, method="difference"), hv_t) < FD_RTOL      # the documented difference
    X32 = X.astype(np.float32) if X.dtype.kind == "f" else X
    hv32 = p.hvp(theta.astype(np.float32), v.astype(np.float32), X32, y)
    assert hv32.dtype == np.float32 and _rel(hv32, hv_t) < 1e-4
    hv32d = p.hvp(theta.astype(np.float32), v.astype(np.float32), X32, y, method="difference")
    assert hv32d.dtype == np.float32


def test_hvp_quadratic_is_exact_and_zero_direction_gives_zero():
    q = P.random_quadratic_clients(3, 4, seed=1)
    theta = np.random.default_rng(0).standard_normal((3, 4))
    v = np.random.default_rng(1).standard_normal((3, 4))
    np.testing.assert_allclose(q.hvp(theta, v), np.einsum("mij,mj->mi", q.hessians(), v), rtol=1e-14)
    _, _, hv_t = _torch_grad_hvp(q, theta, v, None, None)
    assert _rel(q.hvp(theta, v), hv_t) < 1e-12
    assert _rel(q.hvp(theta, v, method="difference"), hv_t) < FD_RTOL
    assert q.example_batch(4, 0) == (None, None)
    p, theta, X, y = _setup("cnn")
    assert np.all(p.hvp(theta, np.zeros_like(theta), X, y) == 0.0)
    assert np.all(p.hvp(theta, np.zeros_like(theta), X, y, method="difference") == 0.0)


def test_hvp_is_symmetric():
    p, theta, X, y = _setup("transformer_2x4")
    rng = np.random.default_rng(2)
    v, w = rng.standard_normal((2, p.dim))
    a, b = float(w @ p.hvp(theta, v, X, y)), float(v @ p.hvp(theta, w, X, y))
    assert a == pytest.approx(b, rel=1e-10)


# -- many parameter vectors at once ----------------------------------------------------------


@pytest.mark.parametrize("name", ["transformer_2x4", "cnn", "mlp_relu"])
def test_vectorised_over_nodes_equals_a_loop(name):
    build, b = ALL[name]
    p = build()
    nodes = 3
    batches = [p.example_batch(b, s) for s in range(nodes)]
    X, y = np.stack([x for x, _ in batches]), np.stack([t for _, t in batches])
    theta = np.stack([p.init(s) for s in range(nodes)])
    loss, grad = p.loss_grad(theta, X, y)
    assert loss.shape == (nodes,) and grad.shape == (nodes, p.dim)
    shared_loss, shared_grad = p.loss_grad(theta, X[0], y[0])          # one batch for every node
    for i in range(nodes):
        li, gi = p.loss_grad(theta[i], X[i], y[i])
        np.testing.assert_allclose(loss[i], li, rtol=1e-13)
        np.testing.assert_allclose(grad[i], gi, rtol=1e-11, atol=1e-15)
        np.testing.assert_allclose(shared_grad[i], p.grad(theta[i], X[0], y[0]), rtol=1e-11, atol=1e-15)
    assert shared_loss.shape == (nodes,)
    v = np.random.default_rng(4).standard_normal(theta.shape)
    hv = p.hvp(theta, v, X, y)
    one_model = p.grad(theta[0], X, y)                                   # one model, every node's batch
    for i in range(nodes):
        np.testing.assert_allclose(hv[i], p.hvp(theta[i], v[i], X[i], y[i]), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(one_model[i], p.grad(theta[0], X[i], y[i]), rtol=1e-11, atol=1e-15)


# -- training --------------------------------------------------------------------------------


@pytest.mark.parametrize("name, lr", [("transformer", 0.5), ("cnn", 0.5), ("mlp_tanh", 0.5)])
def test_loss_decreases_under_sgd(name, lr):
    build, _ = ALL[name]
    p = build()
    theta = p.init(0)
    losses = []
    for step in range(8):
        X, y = p.example_batch(16, step)
        loss, g = p.loss_grad(theta, X, y)
        losses.append(float(loss))
        theta = theta - lr * g
    X, y = p.example_batch(64, 100)
    assert float(p.loss(theta, X, y)) < float(p.loss(p.init(0), X, y))


# -- backends, no input modified -------------------------------------------------------------


@pytest.mark.parametrize("name", ["transformer_2x4", "cnn"])
def test_every_backend_matches_numpy(backend, name):
    p, theta, X, y = _setup(name)
    v = np.random.default_rng(3).standard_normal(p.dim)
    loss_ref, g_ref = p.loss_grad(theta, X, y)
    hv_ref = p.hvp(theta, v, X, y)
    for dt, tol in ((np.float64, 1e-11), (np.float32, 2 * F32_BOUND)):
        Xb = backend.asarray(X, dt if X.dtype.kind == "f" else None)
        tb, vb, yb = backend.asarray(theta, dt), backend.asarray(v, dt), backend.asarray(y)
        loss, g = p.loss_grad(tb, Xb, yb)
        assert g.dtype == tb.dtype
        assert _rel(backend.to_numpy(g), g_ref) <= tol
        assert float(backend.to_numpy(loss)) == pytest.approx(float(loss_ref), rel=max(tol, 1e-13))
        hv = p.hvp(tb, vb, Xb, yb)
        assert hv.dtype == tb.dtype and _rel(backend.to_numpy(hv), hv_ref) <= (1e-11 if dt == np.float64 else 1e-4)
        acc = backend.to_numpy(p.accuracy(tb, Xb, yb))
        assert 0.0 <= float(acc) <= 1.0
        np.testing.assert_array_equal(backend.to_numpy(tb), theta.astype(dt))   # inputs untouched
        np.testing.assert_array_equal(backend.to_numpy(Xb), X.astype(dt) if X.dtype.kind == "f" else X)


def test_example_batch_is_valid_and_seeded_for_every_problem():
    for name in ["softmax_l2", "mlp_tanh", "cnn", "transformer"]:
        p = ALL[name][0]()
        X, y = p.example_batch(5, seed=2)
        X2, y2 = p.example_batch(5, seed=2)
        np.testing.assert_array_equal(X, X2)
        np.testing.assert_array_equal(y, y2)
        assert np.isfinite(p.loss(p.init(0), X, y))
        like = np.zeros(p.dim, dtype=np.float32)
        Xl, yl = p.example_batch(5, seed=2, like=like)
        assert yl.dtype == np.int64 and (Xl.dtype == np.float32 or p.name == "transformer")
    X, y = P.get("transformer").example_batch(2, seed=0)
    assert X.shape == y.shape == (2, 64) and np.array_equal(X[:, 1:], y[:, :-1])


# -- the corpus ------------------------------------------------------------------------------


def test_corpus_is_pinned_and_zipf_like():
    c = P.char_corpus(1 << 16, seed=0)
    assert c.dtype == np.int64 and c.shape == (1 << 16,)
    assert hashlib.sha256(c.astype("<i8").tobytes()).hexdigest()[:16] == CORPUS_SHA_0
    np.testing.assert_array_equal(c[:1000], P.char_corpus(1000, seed=0))     # a prefix of the same stream
    assert not np.array_equal(c[:1000], P.char_corpus(1000, seed=1))
    freq = np.sort(np.bincount(c, minlength=95))[::-1] / c.size
    assert 0.15 < freq[0] < 0.25 and freq[:10].sum() > 0.5                      # space, then a few letters
    assert (freq < 1e-3).sum() >= 5                                             # and a tail of rare tokens
    text = P.decode(c[:200])
    np.testing.assert_array_equal(P.encode(text), c[:200])
    first = int(c[0])
    c[0] = first + 1                                                            # a fresh copy every call
    assert int(P.char_corpus(1 << 16, seed=0)[0]) == first


CORPUS_SHA_0 = "b8d41c42e8b6769d"   # sha256 of the little-endian int64 bytes


# -- bad input ------------------------------------------------------------------------------


def test_bad_input_names_the_argument():
    t = P.transformer(context=8, width=8, heads=2, mlp=8)
    X, y = t.example_batch(2, 0)
    X, y = X[:, :8], y[:, :8]
    theta = t.init(0)
    with pytest.raises(ValueError, match=r"theta must have shape \(\.\.\., %d\)" % t.dim):
        t.loss_grad(theta[:-1], X, y)
    with pytest.raises(ValueError, match="X must hold integer token ids"):
        t.loss_grad(theta, X.astype(np.float64), y)
    with pytest.raises(ValueError, match=r"X must have shape \(\.\.\., B, T\)"):
        t.loss_grad(theta, np.zeros((2, 9), dtype=np.int64), np.zeros((2, 9), dtype=np.int64))
    with pytest.raises(ValueError, match=r"X \(token ids\) must hold token ids in \[0, 94\]"):
        t.loss_grad(theta, X + 95, y)
    with pytest.raises(ValueError, match="y must have shape"):
        t.loss_grad(theta, X, y[:, :4])
    with pytest.raises(ValueError, match="v must have the shape of theta"):
        t.hvp(theta, theta[:-1], X, y)
    with pytest.raises(ValueError, match="v must have theta's dtype"):
        t.hvp(theta, theta.astype(np.float32), X, y)
    with pytest.raises(ValueError, match="method"):
        t.hvp(theta, theta, X, y, method="forward")
    c = P.cnn()
    Xc, yc = c.example_batch(4, 0)
    with pytest.raises(ValueError, match="theta must have shape"):
        c.loss_grad(np.zeros(c.dim + 1), Xc, yc)
    with pytest.raises(ValueError, match="X must have shape"):
        c.loss_grad(c.init(0), Xc[:, :63], yc)
    with pytest.raises(ValueError, match="X and theta must have the same dtype"):
        c.loss_grad(c.init(0), Xc.astype(np.float32), yc)
    with pytest.raises(ValueError, match="y must hold class labels"):
        c.loss_grad(c.init(0), Xc, yc + 10)
    with pytest.raises(ValueError, match="size must be an integer >= 1"):
        c.example_batch(0)


# -- train -----------------------------------------------------------------------------------


def test_train_transformer_with_adam_lowers_the_loss_and_is_seeded():
    import refopt as ro

    t = P.get("transformer")
    res = P.train(t, ro.rules.adam(lr=1e-2), steps=30, batch_size=8, seed=1)
    assert res.diverged_at is None and not res.diverged and res.steps_run == 30
    assert res.losses.shape == (30,) and res.losses.dtype == np.float64
    assert res.losses[-5:].mean() < res.losses[:5].mean() - 0.3
    again = P.train(t, ro.rules.adam(lr=1e-2), steps=3, batch_size=8, seed=1)
    np.testing.assert_array_equal(again.losses, res.losses[:3])


def test_train_on_a_data_pool_and_another_backend(backend):
    import refopt as ro

    c = P.cnn((4, 4))
    X, y = P.load_dataset("digits")[:2]
    theta0 = backend.asarray(c.init(0), np.float32)
    res = P.train(c, ro.rules.adam(lr=1e-2), steps=6, batch_size=16, seed=0, theta0=theta0, data=(X, y))
    assert res.steps_run == 6 and res.theta.dtype == theta0.dtype
    assert res.losses[-1] < res.losses[0]
    np.testing.assert_array_equal(backend.to_numpy(theta0), c.init(0).astype(np.float32))


def test_train_stops_at_the_first_non_finite_loss():
    import refopt as ro

    q = P.quadratic_clients(range(4))
    with np.errstate(over="ignore", invalid="ignore"):
        res = P.train(q, ro.rules.sgd(lr=1e10), steps=100, theta0=np.zeros((4, 1)))
    assert res.diverged and res.steps_run == res.diverged_at + 1 < 100
    assert np.isfinite(res.losses[:-1]).all() and not np.isfinite(res.losses[-1]).all()
    with pytest.raises(ValueError, match="steps must be an integer >= 0"):
        P.train(q, ro.rules.sgd(lr=0.1), steps=-1)
    with pytest.raises(ValueError, match=r"theta0 must have shape \(\.\.\., 1\)"):
        P.train(q, ro.rules.sgd(lr=0.1), steps=1, theta0=np.zeros((4, 2)))
    with pytest.raises(TypeError, match="rule must be a refopt rule"):
        P.train(q, "sgd", steps=1)


# -- a fixed batch as a function of θ (for refopt.diagnostics and refopt.run) ----------------


def test_on_batch_feeds_the_diagnostics():
    import refopt as ro

    p, theta, X, y = _setup("transformer_2x4")
    f = p.on_batch(X, y)
    assert f.dim == p.dim
    g = f.grad(theta)
    np.testing.assert_array_equal(g, p.grad(theta, X, y))
    assert float(f.value(theta)) == float(p.loss(theta, X, y))
    S = float(ro.diagnostics.directional_sharpness(f, theta, -g))
    assert S == pytest.approx(float(g @ p.hvp(theta, g, X, y)) / float(g @ g), rel=1e-12)
    m = ro.diagnostics.model_reduction(f, theta, -g)
    assert float(m.sharpness) == pytest.approx(S, rel=1e-12) and float(m.reduction) > 0
    q = P.quadratic_clients([[1.0, 2.0]], [[2.0, 3.0]])
    fq = q.on_batch()
    np.testing.assert_array_equal(fq.hvp(np.zeros((1, 2)), np.ones((1, 2))), [[2.0, 3.0]])


def test_train_batched_hyper_parameters_equal_separate_runs():
    import refopt as ro

    t = P.transformer(context=16, width=16, heads=2, mlp=32)
    lrs = [1e-3, 1e-2]
    res = P.train(t, ro.rules.adam(lr=np.array([[lr] for lr in lrs])), steps=4, batch_size=4, seed=3,
                  theta0=np.stack([t.init(3)] * len(lrs)))
    assert res.losses.shape == (4, len(lrs))
    for i, lr in enumerate(lrs):
        one = P.train(t, ro.rules.adam(lr=lr), steps=4, batch_size=4, seed=3)
        np.testing.assert_array_equal(res.losses[:, i], one.losses)
        np.testing.assert_array_equal(res.theta[i], one.theta)
