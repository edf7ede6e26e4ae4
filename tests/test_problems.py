"""refopt.problems: exact gradients, vectorisation over nodes, backends, the bundled digits, Dirichlet splits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import refopt.problems as P

RNG = np.random.default_rng(20240601)


def _data(features, classes, lead, b, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((*lead, b, features))
    y = rng.integers(0, classes, size=(*lead, b))
    return X, y


CLASSIFIERS = {
    "softmax": lambda: P.softmax_regression(5, 3),
    "softmax_l2": lambda: P.softmax_regression(5, 3, l2=0.3),
    "softmax_norm": lambda: P.softmax_regression(5, 3, l2=0.3, penalty="norm"),
    "mlp_tanh": lambda: P.mlp(5, 4, 3, l2=0.1),
    "mlp_relu": lambda: P.mlp(5, 4, 3, activation="relu"),
    "mlp_relu_norm": lambda: P.mlp(5, 4, 3, l2=0.2, activation="relu", penalty="norm"),
}


def _central_fd(fun, theta, h=1e-6):
    g = np.zeros_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h
        g[i] = (fun(theta + e) - fun(theta - e)) / (2 * h)
    return g


# -- gradients ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_gradient_matches_central_differences(name):
    p = CLASSIFIERS[name]()
    X, y = _data(p.features, p.num_classes, (), 7, seed=1)
    theta = p.init(3)
    loss, grad = p.loss_grad(theta, X, y)
    fd = _central_fd(lambda t: float(p.loss(t, X, y)), theta)
    assert loss.shape == () and grad.shape == (p.dim,)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_layouts_and_dims():
    s = P.softmax_regression(64, 10)
    m = P.mlp(64, 32, 10)
    assert s.dim == 64 * 10 + 10 and m.dim == 32 * 64 + 32 + 10 * 32 + 10
    theta = np.arange(s.dim, dtype=float)
    W, b = s.unflatten(theta)
    assert W.shape == (10, 64) and W[1, 0] == 64 and b[0] == 640
    W1, b1, W2, b2 = m.unflatten(np.arange(m.dim, dtype=float))
    assert (W1.shape, b1.shape, W2.shape, b2.shape) == ((32, 64), (32,), (10, 32), (10,))
    assert b1[0] == 2048 and W2[0, 0] == 2080 and b2[-1] == m.dim - 1


def test_matches_torch_autograd_and_torch_layout():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    X, y = _data(5, 3, (), 9, seed=4)
    for act in ("tanh", "relu"):
        p = P.mlp(5, 4, 3, l2=0.05, activation=act)
        theta = p.init(7)
        model = nn.Sequential(nn.Linear(5, 4), nn.Tanh() if act == "tanh" else nn.ReLU(), nn.Linear(4, 3)).double()
        torch.nn.utils.vector_to_parameters(torch.as_tensor(theta), model.parameters())
        out = model(torch.as_tensor(X))
        vec = torch.nn.utils.parameters_to_vector(model.parameters())
        loss_t = nn.functional.cross_entropy(out, torch.as_tensor(y)) + 0.025 * (vec * vec).sum()
        grads = torch.autograd.grad(loss_t, list(model.parameters()))
        g_t = torch.cat([g.reshape(-1) for g in grads]).numpy()
        loss, grad = p.loss_grad(theta, X, y)
        np.testing.assert_allclose(loss, loss_t.item(), rtol=1e-13)
        np.testing.assert_allclose(grad, g_t, rtol=1e-11, atol=1e-14)
    s = P.softmax_regression(5, 3)
    torch.manual_seed(0)
    lin = nn.Linear(5, 3).double()
    theta = torch.nn.utils.parameters_to_vector(lin.parameters()).detach().numpy()
    W, b = s.unflatten(theta)
    # a logit is 5 products and a bias summed in some order, with or without FMA: each side is
    # within γ_6 = 6u/(1 - 6u) (u = 2^-53) of the exact value, relative to Σ|x_i w_i| + |b|, so the
    # two differ by at most 2γ_6 times that -- a relative tolerance fails where the sum cancels
    u = 2.0**-53
    bound = 2 * 6 * u / (1 - 6 * u) * (np.abs(X) @ np.abs(W).T + np.abs(b))
    assert np.all(np.abs(s.logits(theta, X) - lin(torch.as_tensor(X)).detach().numpy()) <= bound)


def test_norm_penalty_is_mo_nna_s_plain_norm_and_zero_gradient_at_origin():
    p0 = P.softmax_regression(5, 3)
    p = P.softmax_regression(5, 3, l2=0.5, penalty="norm")
    X, y = _data(5, 3, (), 6)
    theta = p.init(1)
    assert float(p.loss(theta, X, y)) == pytest.approx(float(p0.loss(theta, X, y)) + 0.5 * np.linalg.norm(theta), rel=1e-14)
    z = np.zeros(p.dim)
    np.testing.assert_array_equal(p.grad(z, X, y), p0.grad(z, X, y))


def test_cross_entropy_value_at_zero_is_log_classes():
    p = P.softmax_regression(5, 7)
    X, y = _data(5, 7, (), 11)
    assert float(p.loss(np.zeros(p.dim), X, y)) == pytest.approx(math.log(7), rel=1e-15)
    # huge logits stay finite (max-subtraction)
    loss, grad = p.loss_grad(np.full(p.dim, 1e3), X, y)
    assert np.isfinite(loss) and np.isfinite(grad).all()


# -- vectorisation ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["softmax_l2", "mlp_tanh", "mlp_relu_norm"])
def test_vectorised_over_nodes_equals_a_loop(backend, name):
    p = CLASSIFIERS[name]()
    nodes, b = 4, 6
    X, y = _data(p.features, p.num_classes, (nodes,), b, seed=2)
    theta = np.stack([p.init(s) for s in range(nodes)])
    loss, grad = p.loss_grad(backend.asarray(theta), backend.asarray(X), backend.asarray(y))
    acc = p.accuracy(backend.asarray(theta), backend.asarray(X), backend.asarray(y))
    loss, grad, acc = backend.to_numpy(loss), backend.to_numpy(grad), backend.to_numpy(acc)
    assert loss.shape == (nodes,) and grad.shape == (nodes, p.dim) and acc.shape == (nodes,)
    for i in range(nodes):
        li, gi = p.loss_grad(theta[i], X[i], y[i])
        np.testing.assert_allclose(loss[i], li, rtol=1e-13)
        np.testing.assert_allclose(grad[i], gi, rtol=1e-12, atol=1e-15)
        assert acc[i] == pytest.approx(float(np.mean(np.argmax(p.logits(theta[i], X[i]), -1) == y[i])))


def test_shared_data_broadcasts_over_nodes(numpy_backend):
    p = P.mlp(5, 4, 3)
    X, y = _data(5, 3, (), 10, seed=5)
    theta = np.stack([p.init(s) for s in range(3)])
    loss, grad = p.loss_grad(theta, X, y)
    assert loss.shape == (3,) and grad.shape == (3, p.dim)
    for i in range(3):
        np.testing.assert_allclose(grad[i], p.grad(theta[i], X, y), rtol=1e-13)
    # one model, many batches
    Xs, ys = _data(5, 3, (2,), 10, seed=6)
    loss, grad = p.loss_grad(theta[0], Xs, ys)
    assert grad.shape == (2, p.dim)
    np.testing.assert_allclose(grad[1], p.grad(theta[0], Xs[1], ys[1]), rtol=1e-13)


@given(features=st.integers(1, 4), classes=st.integers(2, 4), b=st.integers(1, 5), nodes=st.integers(1, 3),
       hidden=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_property_vectorised_equals_loop(features, classes, b, nodes, hidden, seed):
    for p in (P.softmax_regression(features, classes, 0.1), P.mlp(features, hidden, classes, 0.1)):
        X, y = _data(features, classes, (nodes,), b, seed=seed)
        theta = np.random.default_rng(seed).standard_normal((nodes, p.dim))
        loss, grad = p.loss_grad(theta, X, y)
        for i in range(nodes):
            li, gi = p.loss_grad(theta[i], X[i], y[i])
            np.testing.assert_allclose(loss[i], li, rtol=1e-12)
            np.testing.assert_allclose(grad[i], gi, rtol=1e-11, atol=1e-14)


# -- backends -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["softmax_l2", "mlp_tanh", "mlp_relu"])
def test_every_backend_matches_numpy_float64(backend, name, dtype):
    p = CLASSIFIERS[name]()
    X, y = _data(p.features, p.num_classes, (3,), 5, seed=8)
    theta = np.stack([p.init(s) for s in range(3)])
    ref_loss, ref_grad = p.loss_grad(theta.astype(dtype).astype(np.float64), X.astype(dtype).astype(np.float64), y)
    th, Xb, yb = backend.asarray(theta, dtype), backend.asarray(X, dtype), backend.asarray(y)
    loss, grad = p.loss_grad(th, Xb, yb)
    assert loss.dtype == th.dtype and grad.dtype == th.dtype
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(backend.to_numpy(loss), ref_loss, **tol)
    np.testing.assert_allclose(backend.to_numpy(grad), ref_grad, **tol)
    np.testing.assert_array_equal(backend.to_numpy(th), theta.astype(dtype))  # untouched
    acc = p.accuracy(th, Xb, yb)
    assert acc.dtype == th.dtype


def test_quadratic_clients_on_every_backend(backend):
    q = P.random_quadratic_clients(4, 3, seed=2)
    theta = RNG.standard_normal((4, 3))
    loss, grad = q.loss_grad(backend.asarray(theta))
    r = theta - q.optima
    g_ref = np.einsum("mij,mj->mi", q.hessians(), r)
    np.testing.assert_allclose(backend.to_numpy(grad), g_ref, rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(loss), 0.5 * (r * g_ref).sum(-1), rtol=1e-12)
    loss32, grad32 = q.loss_grad(backend.asarray(theta, np.float32))
    assert grad32.dtype == backend.asarray(theta, np.float32).dtype


# -- quadratic clients -------------------------------------------------------------------------


def test_quadratic_1d_federated_optimum_is_4_5():
    q = P.quadratic_clients(range(10))
    assert (q.clients, q.dim, q.kind) == (10, 1, "identity")
    assert q.optimum()[0] == pytest.approx(4.5, abs=1e-15)
    loss, grad = q.loss_grad(np.zeros(1))          # every client at theta = 0
    np.testing.assert_allclose(loss, 0.5 * np.arange(10.0) ** 2)
    np.testing.assert_allclose(grad[:, 0], -np.arange(10.0))
    # weighted optimum: sum p_i theta_i*
    w = np.arange(1.0, 11.0)
    assert q.optimum(w)[0] == pytest.approx((w * np.arange(10)).sum() / w.sum(), rel=1e-15)


@pytest.mark.parametrize("kind", ["scalar", "diagonal", "full"])
def test_quadratic_optimum_zeroes_the_federated_gradient(kind):
    rng = np.random.default_rng(3)
    M, d = 5, 4
    opt = rng.standard_normal((M, d))
    if kind == "scalar":
        curv = rng.uniform(0.5, 2, M)
    elif kind == "diagonal":
        curv = rng.uniform(0.5, 2, (M, d))
    else:
        curv = P.random_quadratic_clients(M, d, seed=1).curvatures
    q = P.quadratic_clients(opt, curv)
    assert q.kind == kind
    w = rng.uniform(0.1, 1.0, M)
    star = q.optimum(w)
    L, g = q.global_loss_grad(star, w)
    np.testing.assert_allclose(g, 0.0, atol=1e-13)
    assert float(L) == pytest.approx(q.minimum(w), rel=1e-12)
    fd = _central_fd(lambda t: float(q.global_loss_grad(t, w)[0]), star + 0.3)
    np.testing.assert_allclose(q.global_loss_grad(star + 0.3, w)[1], fd, rtol=1e-6, atol=1e-8)


def test_quadratic_rejects_bad_input():
    with pytest.raises(ValueError, match="positive definite"):
        P.quadratic_clients(np.zeros((2, 2)), np.array([np.eye(2), -np.eye(2)]))
    with pytest.raises(ValueError, match="curvatures must have shape"):
        P.quadratic_clients(np.zeros((2, 3)), np.ones((3,)))
    with pytest.raises(ValueError, match="> 0"):
        P.quadratic_clients(range(3), [1.0, 0.0, 1.0])
    q = P.quadratic_clients(range(3))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 1\)"):
        q.loss_grad(np.zeros((4, 1)))
    with pytest.raises(TypeError, match="no data"):
        q.loss_grad(np.zeros(1), np.zeros((2, 1)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="one entry per client"):
        q.optimum([1.0, 2.0])
    with pytest.raises(TypeError, match="not a classifier"):
        q.accuracy(np.zeros(1))


# -- data ------------------------------------------------------------------------------------------


def test_digits_bundled_split_and_scaling():
    X_tr, y_tr, X_te, y_te = P.load_dataset("digits")
    assert X_tr.shape == (1438, 64) and X_te.shape == (359, 64)
    assert X_tr.dtype == np.float64 and y_tr.dtype == np.int64
    assert X_tr.min() == 0.0 and X_tr.max() == 1.0 and X_te.max() <= 1.0
    counts = np.bincount(np.concatenate([y_tr, y_te]))
    np.testing.assert_array_equal(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])  # UCI test set
    np.testing.assert_array_equal(np.bincount(y_te), [36, 36, 35, 37, 36, 36, 36, 36, 35, 36])
    assert (X_tr.sum() + X_te.sum()) * 16 == 561718  # pixel-count checksum of the 1797 images
    # pixel values are k/16 exactly; the split is the same on every call
    assert np.array_equal(X_tr * 16, np.round(X_tr * 16))
    again = P.load_dataset("digits")
    assert all(np.array_equal(a, b) for a, b in zip(again, (X_tr, y_tr, X_te, y_te)))
    assert P.digits_images(X_tr).shape == (1438, 8, 8)
    assert P.dataset_info("digits")["license"].startswith("CC BY 4.0")


def test_softmax_regression_on_digits_by_plain_gradient_descent():
    X_tr, y_tr, X_te, y_te = P.load_dataset("digits")
    p = P.softmax_regression(64, 10)
    theta = np.zeros(p.dim)
    for _ in range(300):
        theta = theta - 1.0 * p.grad(theta, X_tr, y_tr)
    acc = float(p.accuracy(theta, X_te, y_te))
    # measured: 0.9331 test (0.9764 train) after 300 steps with lr 1.0 from zero
    assert acc > 0.92
    assert float(p.accuracy(theta, X_tr, y_tr)) > 0.97


def test_gaussian_mixture_is_seeded_and_balanced():
    a = P.gaussian_mixture(500, 6, 4, seed=3)
    b = P.gaussian_mixture(500, 6, 4, seed=3)
    c = P.gaussian_mixture(500, 6, 4, seed=4)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    X_tr, y_tr, X_te, y_te = a
    assert X_tr.shape == (400, 6) and X_te.shape == (100, 6) and y_tr.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(np.concatenate([y_tr, y_te])), [125] * 4)
    # separable enough: a few hundred GD steps of softmax regression classify most test points
    p = P.softmax_regression(6, 4)
    theta = np.zeros(p.dim)
    for _ in range(100):
        theta = theta - 0.5 * p.grad(theta, X_tr, y_tr)
    assert float(p.accuracy(theta, X_te, y_te)) > 0.85
    assert [x.shape for x in P.load_dataset("gaussian_mixture", n=50, features=3, classes=2)] == [
        (40, 3), (40,), (10, 3), (10,)]


def test_unknown_dataset_and_bad_parameters():
    with pytest.raises(ValueError, match="did you mean 'digits'"):
        P.load_dataset("digit")
    with pytest.raises(TypeError, match="takes no parameters"):
        P.load_dataset("digits", seed=1)
    with pytest.raises(ValueError, match="test_fraction"):
        P.gaussian_mixture(10, 2, 2, test_fraction=0.0)
    with pytest.raises(ValueError, match="did you mean 'mlp'"):
        P.get("mpl")


# -- Dirichlet splits -------------------------------------------------------------------------------

Y_DIGITS = P.load_dataset("digits")[1]


def test_byzfl_split_partitions_all_indices():
    for alpha in (0.1, 1.0, 10.0, math.inf):
        parts = P.dirichlet_split(Y_DIGITS, 7, alpha, seed=1, method="byzfl")
        assert len(parts) == 7
        allidx = np.concatenate(parts)
        np.testing.assert_array_equal(np.sort(allidx), np.arange(Y_DIGITS.size))


def test_monna_split_follows_the_code():
    nodes = 21
    m = Y_DIGITS.size // nodes
    parts = P.dirichlet_split(Y_DIGITS, nodes, 1.0, seed=0)
    assert len(parts) == nodes
    for idx in parts:
        assert idx.dtype == np.int64
        assert np.unique(idx).size == idx.size            # no repeats within a node
        assert m - 10 < idx.size <= m                     # Σ ⌊m p_k⌋ loses < K examples
        labels = Y_DIGITS[idx]
        assert np.all(np.diff(labels) >= 0)               # class by class
    # nodes are drawn independently: examples may be shared between nodes
    allidx = np.concatenate(parts)
    assert np.unique(allidx).size < allidx.size
    # alpha = inf: exactly floor(m / K) of every class
    for idx in P.dirichlet_split(Y_DIGITS, nodes, math.inf, seed=0):
        np.testing.assert_array_equal(np.bincount(Y_DIGITS[idx], minlength=10), [m // 10] * 10)


def test_monna_split_caps_at_the_class_size():
    y = np.repeat(np.arange(3), [5, 50, 50])
    parts = P.dirichlet_split(y, 1, 1e-3, seed=2)           # one node, one class takes ~all m = 105
    assert parts[0].size <= 50 and np.unique(parts[0]).size == parts[0].size


def test_fraboni_split_sizes_and_alpha_zero():
    nodes = 10
    m = Y_DIGITS.size // nodes
    parts = P.dirichlet_split(Y_DIGITS, nodes, 0.5, seed=0, method="fraboni")
    assert [p.size for p in parts] == [m] * nodes
    for i, idx in enumerate(P.dirichlet_split(Y_DIGITS, 12, 0.0, seed=0, method="fraboni")):
        assert set(Y_DIGITS[idx]) == {i % 10}


@pytest.mark.parametrize("method", P.SPLIT_METHODS)
def test_class_proportions_concentrate_as_alpha_grows(method):
    global_p = np.bincount(Y_DIGITS) / Y_DIGITS.size
    tv = []
    for alpha in (0.05, 0.5, 5.0, 50.0):
        parts = P.dirichlet_split(Y_DIGITS, 10, alpha, seed=0, method=method)
        props = P.class_proportions(Y_DIGITS, parts)
        sizes = np.array([p.size for p in parts])
        tv.append(float((0.5 * np.abs(props - global_p).sum(1) * sizes).sum() / sizes.sum()))
    assert tv == sorted(tv, reverse=True), tv
    assert tv[0] > 0.5 and tv[-1] < 0.1


@pytest.mark.parametrize("method", P.SPLIT_METHODS)
def test_split_is_deterministic_given_seed(method):
    a = P.dirichlet_split(Y_DIGITS, 5, 1.0, seed=11, method=method)
    b = P.dirichlet_split(Y_DIGITS, 5, 1.0, seed=11, method=method)
    c = P.dirichlet_split(Y_DIGITS, 5, 1.0, seed=12, method=method)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(u.shape == v.shape and np.array_equal(u, v) for u, v in zip(a, c))
    g = P.dirichlet_split(Y_DIGITS, 5, 1.0, seed=np.random.default_rng(11), method=method)
    assert all(np.array_equal(u, v) for u, v in zip(a, g))


def test_split_bad_input():
    with pytest.raises(ValueError, match="alpha must be > 0"):
        P.dirichlet_split(Y_DIGITS, 5, 0.0)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        P.dirichlet_split(Y_DIGITS, 5, -1.0, method="fraboni")
    with pytest.raises(ValueError, match="did you mean 'byzfl'"):
        P.dirichlet_split(Y_DIGITS, 5, 1.0, method="byzf")
    with pytest.raises(ValueError, match="nodes must be an integer >= 1"):
        P.dirichlet_split(Y_DIGITS, 0, 1.0)
    with pytest.raises(TypeError, match="integer class labels"):
        P.dirichlet_split(Y_DIGITS.astype(float), 3, 1.0)
    with pytest.raises(ValueError, match="1-D"):
        P.dirichlet_split(Y_DIGITS.reshape(-1, 1), 3, 1.0)
    with pytest.raises(ValueError, match="N // nodes = 0"):
        P.dirichlet_split(np.arange(3), 5, 1.0)


# -- bad input to the models --------------------------------------------------------------------------


def test_model_bad_input(backend):
    p = P.softmax_regression(5, 3)
    X, y = _data(5, 3, (2,), 4)
    th = backend.asarray(np.zeros((2, p.dim)))
    with pytest.raises(ValueError, match=r"theta must have shape \(\.\.\., 18\)"):
        p.loss_grad(backend.asarray(np.zeros((2, 17))), backend.asarray(X), backend.asarray(y))
    with pytest.raises(TypeError, match="same dtype"):
        p.loss_grad(th, backend.asarray(X, np.float32), backend.asarray(y))
    with pytest.raises(ValueError, match=r"labels in \[0, 2\]; got the label 3"):
        p.loss_grad(th, backend.asarray(X), backend.asarray(np.full((2, 4), 3)))
    with pytest.raises(ValueError, match="label -1"):
        p.loss_grad(th, backend.asarray(X), backend.asarray(np.full((2, 4), -1)))
    with pytest.raises(TypeError, match="integer class labels"):
        p.loss_grad(th, backend.asarray(X), backend.asarray(y.astype(float)))
    with pytest.raises(ValueError, match="features per example"):
        p.loss_grad(th, backend.asarray(X[..., :4]), backend.asarray(y))
    with pytest.raises(ValueError, match="do not broadcast"):
        p.loss_grad(backend.asarray(np.zeros((3, p.dim))), backend.asarray(X), backend.asarray(y))
    with pytest.raises(TypeError, match="real floating"):
        p.loss_grad(backend.asarray(np.zeros((2, p.dim), dtype=np.int64)), backend.asarray(X), backend.asarray(y))


def test_mixed_devices_are_rejected():
    xs = pytest.importorskip("array_api_strict")
    p = P.softmax_regression(5, 3)
    X, y = _data(5, 3, (), 4)
    dev2 = xs.Device("device2")
    with pytest.raises(ValueError, match="same device"):
        p.loss_grad(xs.asarray(np.zeros(p.dim)), xs.asarray(X, device=dev2), xs.asarray(y))
    with pytest.raises(ValueError, match="same device"):
        p.loss_grad(xs.asarray(np.zeros(p.dim)), xs.asarray(X), xs.asarray(y, device=dev2))


def test_constructor_bad_input():
    with pytest.raises(ValueError, match="did you mean 'relu'"):
        P.mlp(3, 2, 2, activation="rel")
    with pytest.raises(ValueError, match="penalty"):
        P.softmax_regression(3, 2, penalty="l1")
    with pytest.raises(ValueError, match="l2 must be a finite real number >= 0"):
        P.softmax_regression(3, 2, l2=-1.0)
    with pytest.raises(ValueError, match="classes must be an integer >= 2"):
        P.softmax_regression(3, 1)
    with pytest.raises(TypeError, match="features must be an integer"):
        P.mlp(3.0, 2, 2)


def test_init_is_seeded_and_follows_torch_bounds():
    m = P.mlp(64, 32, 10)
    a, b = m.init(0), m.init(0)
    assert a.dtype == np.float64 and a.shape == (m.dim,)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, m.init(1))
    W1, b1, W2, b2 = m.unflatten(a)
    assert np.abs(W1).max() <= 1 / 8 and np.abs(b1).max() <= 1 / 8
    assert np.abs(W2).max() <= 1 / math.sqrt(32) and np.abs(W2).max() > 1 / 8
    np.testing.assert_array_equal(m.zeros(), np.zeros(m.dim))
