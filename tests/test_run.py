"""refopt.run: trajectories, batched runs == separate runs, traces, divergence report, bad input."""

from __future__ import annotations

import importlib
import math

import array_api_compat
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refopt import rules
from refopt.run import REASONS, RunResult, run


# ---------------------------------------------------------------------------------------
# small function-like classes (duck typing: value / grad / hvp on (..., dim))
# ---------------------------------------------------------------------------------------


class Quadratic:
    """f(x) = ½ Σ h_i x_i², any backend (h is converted on first use)."""

    def __init__(self, h, name="quad"):
        self.h = np.asarray(h, dtype=np.float64)
        self.dim = self.h.shape[0]
        self.name = name

    def _h(self, x):
        xp = array_api_compat.array_namespace(x)
        return xp.asarray(self.h, dtype=x.dtype, device=array_api_compat.device(x))

    def value(self, x):
        xp = array_api_compat.array_namespace(x)
        return 0.5 * xp.sum(self._h(x) * x * x, axis=-1)

    def grad(self, x):
        return self._h(x) * x

    def hvp(self, x, v):
        return self._h(x) * v


class LogCosh:
    """f(x) = Σ log cosh(x_i - c_i) (smooth, not quadratic)."""

    name = "logcosh"

    def __init__(self, c):
        self.c = np.asarray(c, dtype=np.float64)
        self.dim = self.c.shape[0]

    def _c(self, x):
        xp = array_api_compat.array_namespace(x)
        return xp.asarray(self.c, dtype=x.dtype, device=array_api_compat.device(x))

    def value(self, x):
        xp = array_api_compat.array_namespace(x)
        return xp.sum(xp.log(xp.cosh(x - self._c(x))), axis=-1)

    def grad(self, x):
        xp = array_api_compat.array_namespace(x)
        return xp.tanh(x - self._c(x))


class Noisy:
    """A stochastic gradient whose noise is a function of the step index only (records calls)."""

    name = "noisy"
    dim = 2

    def __init__(self):
        self.steps = []

    def value(self, x):
        xp = array_api_compat.array_namespace(x)
        return 0.5 * xp.sum(x * x, axis=-1)

    def grad(self, x, *, step=None):
        self.steps.append(step)
        return x + 0.01 * math.sin(step + 1.0)


H = [1.0, 10.0, 100.0]
X0 = np.array([1.0, -2.0, 0.5])


def manual(rule, f, x0, steps):
    """The loop written by hand (NumPy)."""
    x = x0
    state = rule.init(x)
    xs = [x]
    for _ in range(steps):
        x, state = rule.step(x, f.grad(x), state)
        xs.append(x)
    return np.stack(xs)


# ---------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,hyper", [("sgd", {"lr": 0.01, "momentum": 0.9}), ("adam", {"lr": 0.1}), ("adabelief", {"lr": 0.05})])
def test_run_equals_the_hand_written_loop(name, hyper):
    f = Quadratic(H)
    rule = rules.get(name, **hyper)
    res = run(rule, f, X0, 25)
    assert isinstance(res, RunResult)
    assert res.x.shape == (26, 3) and res.loss.shape == (26,) and res.grad_norm.shape == (26,)
    np.testing.assert_array_equal(res.x, manual(rule, f, X0, 25))
    np.testing.assert_array_equal(res.loss, f.value(res.x))
    np.testing.assert_allclose(res.grad_norm, np.linalg.norm(f.grad(res.x), axis=-1), rtol=1e-15)
    assert not res.any_diverged and res.divergences == ()
    assert res.diverged_at.shape == () and int(res.diverged_at) == -1
    assert "no run diverged" in res.report()
    # the golden problem's first SGD step (update-rules.md §5) as a sanity anchor
    np.testing.assert_array_equal(res.x[0], X0)


def test_sgd_on_a_quadratic_matches_the_closed_form():
    # x_k = (1 - lr h)^k x_0 on f = ½ Σ h x²
    f = Quadratic(H)
    res = run(rules.get("sgd", lr=0.015), f, X0, 40)
    k = np.arange(41)[:, None]
    np.testing.assert_allclose(res.x, (1 - 0.015 * np.array(H)) ** k * X0, rtol=1e-12, atol=1e-300)


def test_run_on_every_backend_keeps_namespace_and_dtype(backend):
    f = Quadratic(H)
    rule = rules.get("adam", lr=0.1)
    expected = run(rule, f, X0, 10)
    for dtype in (np.float64, np.float32):
        x0 = backend.freeze(backend.asarray(X0, dtype))
        res = run(rule, f, x0, 10, keep_grads=True)
        xp = array_api_compat.array_namespace(res.x)
        assert xp is array_api_compat.array_namespace(x0)
        for a in (res.x, res.loss, res.grad_norm, res.grads):
            assert a.dtype == x0.dtype
        assert array_api_compat.device(res.x) == array_api_compat.device(x0)
        np.testing.assert_array_equal(backend.to_numpy(res.x)[0], X0.astype(dtype))
        tol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(backend.to_numpy(res.x), expected.x, rtol=tol, atol=tol)
        np.testing.assert_allclose(backend.to_numpy(res.grads), f.grad(expected.x), rtol=tol, atol=tol)


def test_batched_hyper_parameters_equal_separate_runs_exactly(backend):
    """K configurations x M start points in one call == K*M separate runs, bit for bit."""
    f = LogCosh([0.3, -1.0, 2.0, 0.0])
    rng = np.random.default_rng(0)
    starts = rng.normal(size=(3, 2, 4)) * 2
    lrs = np.array([0.05, 0.2, 1.0])
    betas1 = np.array([0.8, 0.9, 0.95])
    for dtype in (np.float64, np.float32):
        rule = rules.get("adam", lr=lrs[:, None, None], betas=(betas1[:, None, None], 0.999))
        res = run(rule, f, backend.asarray(starts, dtype), 30, trace=True)
        got = backend.to_numpy(res.x)
        assert got.shape == (31, 3, 2, 4)
        for i in range(3):
            for j in range(2):
                single = run(rules.get("adam", lr=float(lrs[i]), betas=(float(betas1[i]), 0.999)), f,
                             backend.asarray(starts[i, j], dtype), 30)
                np.testing.assert_array_equal(got[:, i, j], backend.to_numpy(single.x))
                # the loss is a sum over the coordinates: torch may reduce a batch in another order
                tol = 1e-14 if dtype == np.float64 else 1e-6
                np.testing.assert_allclose(backend.to_numpy(res.loss)[:, i, j], backend.to_numpy(single.loss), rtol=tol)


@given(k=st.integers(1, 4), lr=st.floats(1e-3, 0.5), mu=st.floats(0.0, 0.95))
def test_batched_sgd_momentum_equals_separate_runs(k, lr, mu):
    f = Quadratic(H)
    lrs = lr * (1.0 + np.arange(k))
    starts = X0 * (1.0 + 0.5 * np.arange(k))[:, None]
    res = run(rules.get("sgd", lr=lrs[:, None], momentum=mu), f, starts, 12)
    for i in range(k):
        single = run(rules.get("sgd", lr=float(lrs[i]), momentum=mu), f, starts[i], 12)
        np.testing.assert_array_equal(res.x[:, i], single.x)


def test_clipped_rules_need_batch_axes_for_independent_runs():
    f = Quadratic([1000.0] * 2 + [1.0] * 18)
    starts = np.stack([np.linspace(1, 2, 20), np.linspace(-3, 1, 20)])
    with pytest.raises(ValueError, match=r"batch_axes=1"):
        run(rules.get("clipped_sgd", lr=1e-3, clip_fraction=0.1), f, starts, 5)
    rule = rules.get("clipped_sgd", lr=np.array([[1e-3], [5e-4]]), clip_fraction=0.1, batch_axes=1)
    res = run(rule, f, starts, 15)
    for i, lr in enumerate((1e-3, 5e-4)):
        single = run(rules.get("clipped_sgd", lr=lr, clip_fraction=0.1), f, starts[i], 15)
        np.testing.assert_array_equal(res.x[:, i], single.x)


def test_traces_are_stacked_per_name(backend):
    f = Quadratic(H)
    lr = np.array([[0.1], [0.01]])
    res = run(rules.get("adam", lr=lr), f, backend.asarray(np.stack([X0, -X0]), np.float32), 7, trace=True)
    tr = res.traces
    assert list(tr)[:5] == ["t", "bc1", "bc2", "sqrt_bc2", "step_size"]
    np.testing.assert_array_equal(backend.to_numpy(tr["t"]), np.arange(1, 8))
    np.testing.assert_allclose(backend.to_numpy(tr["bc1"]), 1 - 0.9 ** np.arange(1, 8), rtol=1e-6)
    assert backend.to_numpy(tr["step_size"]).shape == (7, 2, 1)  # batched lr -> per-configuration scalar
    for name in ("g", "m", "v", "update", "params"):
        assert tr[name].shape == (7, 2, 3) and tr[name].dtype == res.x.dtype
    np.testing.assert_array_equal(backend.to_numpy(tr["params"]), backend.to_numpy(res.x)[1:])
    assert res.trace_steps["t"] == tuple(range(1, 8))
    assert run(rules.get("adam"), f, X0, 3).traces is None


def test_traces_that_appear_only_at_some_steps_list_them():
    # RAdam's adaptive term l_t exists only once the rectification test passes (not at t = 1)
    res = run(rules.get("radam", lr=0.01), Quadratic(H), X0, 8, trace=True)
    assert res.trace_steps["t"] == tuple(range(1, 9))
    steps = res.trace_steps.get("l_t")
    assert steps is not None and 1 not in steps and steps == tuple(range(steps[0], 9))
    assert res.traces["l_t"].shape == (len(steps), 3)
    rectified = np.asarray(res.traces["rectified"]).reshape(-1)
    assert [k for k in range(1, 9) if rectified[k - 1]] == list(steps)


def test_stochastic_gradients_get_the_step_index():
    f = Noisy()
    res = run(rules.get("sgd", lr=0.1), f, np.array([1.0, 2.0]), 5)
    assert f.steps == [0, 1, 2, 3, 4, 5]  # x_0 .. x_5 (the last gradient only for its norm)
    x = np.array([1.0, 2.0])
    for k in range(5):
        x = x - 0.1 * (x + 0.01 * math.sin(k + 1.0))
    np.testing.assert_allclose(res.x[-1], x, rtol=1e-15)


def test_progress_hook_and_quiet_by_default(capsys):
    calls = []
    run(rules.get("sgd", lr=0.01), Quadratic(H), X0, 6, progress=lambda k, n: calls.append((k, n)))
    assert calls == [(k, 6) for k in range(1, 7)]
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


# ---------------------------------------------------------------------------------------
# divergence
# ---------------------------------------------------------------------------------------


def test_divergence_report_names_runs_and_steps(backend):
    """sgd with lr 0.3 on h = 100 multiplies that coordinate by -29 per step: it blows up."""
    f = Quadratic(H)
    lrs = np.array([0.001, 0.3, 0.01, 0.5])
    starts = np.tile(X0, (4, 1))
    x0 = backend.asarray(starts)
    res = run(rules.get("sgd", lr=lrs[:, None]), f, x0, 60)
    x = backend.to_numpy(res.x)
    loss = backend.to_numpy(res.loss)
    assert np.isfinite(x).all() and np.isfinite(loss).all()
    np.testing.assert_array_equal(res.diverged, [False, True, False, True])
    # expected first step: loss_k > L0 + 1e8 (1 + L0) with the closed form x_k = (1 - lr h)^k x0
    L0 = f.value(starts[0])
    limit = L0 + 1e8 * (1 + L0)
    for i in (1, 3):
        k = np.arange(61)[:, None]
        closed = 0.5 * (np.array(H) * ((1 - lrs[i] * np.array(H)) ** k * X0) ** 2).sum(-1)
        first = int(np.argmax(closed > limit))
        assert res.diverged_at[i] == first
        assert res.reason_codes[i] == 4
        # before divergence: the separate run's values; after: frozen at the last good iterate
        single = run(rules.get("sgd", lr=float(lrs[i])), f, starts[i], first - 1)
        np.testing.assert_allclose(x[:first, i], single.x, rtol=1e-12)
        np.testing.assert_array_equal(x[first:, i], np.broadcast_to(x[first - 1, i], (61 - first, 3)))
        np.testing.assert_array_equal(loss[first:, i], loss[first - 1, i])
    assert list(res.diverged_at[[0, 2]]) == [-1, -1]
    report = res.report()
    assert "2 of 4 diverged" in report
    assert f"run (1,): diverged at step {res.diverged_at[1]} (loss blew up" in report
    assert f"run (3,): diverged at step {res.diverged_at[3]}" in report
    assert "nan" not in report.split("\n", 1)[1].lower() or "loss there" in report
    assert [d.index for d in res.divergences] == sorted([(1,), (3,)], key=lambda i: res.diverged_at[i[0]])


def test_non_finite_values_are_caught_and_named():
    f = Quadratic(H)
    with np.errstate(over="ignore"):  # the test function itself overflows, as intended
        res = run(rules.get("sgd", lr=1.0), f, X0, 400, blowup=None)
    assert res.diverged and res.reason_codes == 2  # the loss overflows to inf first
    d = res.divergences[0]
    assert d.reason == REASONS[2] and d.value == math.inf and math.isfinite(d.last_loss)
    assert np.isfinite(res.x).all() and np.isfinite(res.loss).all()
    k = d.step
    np.testing.assert_array_equal(res.x[k - 1:], np.broadcast_to(res.x[k - 1], res.x[k - 1:].shape))
    assert str(d).startswith(f"run: diverged at step {k} (loss not finite")


def test_gradient_nan_is_a_divergence():
    class Cliff(Quadratic):
        def grad(self, x):
            g = super().grad(x)
            return np.where(np.abs(x) < 0.5, np.nan, g)

    res = run(rules.get("sgd", lr=0.3), Cliff([1.0]), np.array([[1.0], [-3.0], [0.4 + 2.0]]), 10)
    assert res.reason_codes.tolist() == [3, 3, 3]
    assert res.diverged_at.tolist() == [2, 6, 5]  # 0.7^k (1, 3, 2.4) first below 0.5
    assert np.isfinite(res.grad_norm).all() and np.isfinite(res.x).all()


# ---------------------------------------------------------------------------------------
# bad input: raised before any work
# ---------------------------------------------------------------------------------------


class Counting(Quadratic):
    def __init__(self, h):
        super().__init__(h)
        self.calls = 0

    def value(self, x):
        self.calls += 1
        return super().value(x)

    def grad(self, x):
        self.calls += 1
        return super().grad(x)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"steps": 0}, ValueError, "steps must be a positive integer"),
        ({"steps": -3}, ValueError, "steps must be a positive integer"),
        ({"steps": 2.5}, TypeError, "steps must be a positive integer"),
        ({"steps": True}, TypeError, "steps must be a positive integer"),
        ({"x0": np.ones(4)}, ValueError, r"dim=3: the last axis must have size 3"),
        ({"x0": np.array([1.0, np.inf, 0.0])}, ValueError, r"x0 must be finite everywhere; got inf at index \(1,\)"),
        ({"x0": np.array([1, 2, 3])}, TypeError, "x0 has dtype int64"),
        ({"x0": [1.0, 2.0, 3.0]}, TypeError, "x0 must be an array"),
        ({"x0": np.float64(1.0)}, TypeError, "x0 must be an array"),
        ({"rule": "adamm"}, ValueError, r"unknown rule 'adamm'; did you mean 'adam'"),
        ({"rule": 3}, TypeError, "rule must be a refopt rule"),
        ({"rule": rules.get("sgd", lr=np.ones((2, 1)))}, ValueError, "does not broadcast"),
        ({"blowup": 0}, ValueError, "blowup must be a number > 0 or None"),
        ({"trace": 1}, TypeError, "trace must be True or False"),
        ({"progress": 5}, TypeError, "progress must be a callable"),
    ],
)
def test_bad_input_raises_before_any_work(kwargs, exc, match):
    f = Counting(H)
    args = {"rule": rules.get("sgd", lr=0.1), "x0": X0, "steps": 5, **kwargs}
    with pytest.raises(exc, match=match):
        run(args["rule"], f, args["x0"], args["steps"], **{k: v for k, v in kwargs.items() if k not in ("rule", "x0", "steps")})
    assert f.calls == 0


def test_bad_functions_are_named():
    class ValueOnly:
        def value(self, x):
            return x.sum(-1)

    with pytest.raises(TypeError, match="ValueOnly has no grad"):
        run("sgd", ValueOnly(), X0, 3)

    class WrongShape(Quadratic):
        def grad(self, x):
            return x[..., :2]

    with pytest.raises(ValueError, match=r"grad\(x\) must return an array of the shape of x"):
        run("sgd", WrongShape(H), X0, 3)

    class Float64Out(Quadratic):
        def grad(self, x):
            return super().grad(x).astype(np.float64)

    with pytest.raises(TypeError, match="must keep the dtype of its input"):
        run("sgd", Float64Out(H), X0.astype(np.float32), 3)

    class NanStart(Quadratic):
        def value(self, x):
            return super().value(x) * np.nan

    with pytest.raises(ValueError, match="not finite at x0"):
        run("sgd", NanStart(H), X0, 3)


def test_unknown_function_name_suggests():
    pytest.importorskip("refopt.functions")
    functions = importlib.import_module("refopt.functions")
    if not hasattr(functions, "names"):
        pytest.skip("refopt.functions has no catalogue yet")
    with pytest.raises(ValueError, match=r"unknown function 'rosenbrok'; did you mean 'rosenbrock'"):
        run("sgd", "rosenbrok", np.zeros(2), 3)


# ---------------------------------------------------------------------------------------
# on the real functions (refopt.functions), when they are there
# ---------------------------------------------------------------------------------------


def _functions():
    try:
        functions = importlib.import_module("refopt.functions")
    except ImportError:
        pytest.skip("refopt.functions is not importable yet")
    if not hasattr(functions, "get"):
        pytest.skip("refopt.functions has no get() yet")
    return functions


@pytest.mark.parametrize(
    "fname,rule_name,expected",
    [
        # update-rules.md §2.3: x0 = -1, lr 0.1, beta1 0.95, 299 updates
        ("diffgrad_f1", "adam", 0.200115),
        ("diffgrad_f1", "diffgrad", -0.300071),
        ("diffgrad_f2", "adam", 0.000090),
        ("diffgrad_f2", "diffgrad", -0.642963),
    ],
)
def test_diffgrad_table_is_reproduced(fname, rule_name, expected):
    functions = _functions()
    f = functions.get(fname)
    rule = rules.get(rule_name, lr=0.1, betas=(0.95, 0.999))
    res = run(rule, f, np.array([-1.0]), 299)
    assert abs(float(res.x[-1, 0]) - expected) < 1e-3


def test_rosenbrock_blow_up_is_reported():
    functions = _functions()
    f = functions.get("rosenbrock")
    starts = np.array([[-1.2, 1.0], [0.5, 0.5], [-1.2, 1.0]])
    lrs = np.array([[1e-3], [1e-3], [0.05]])
    res = run(rules.get("sgd", lr=lrs), f, starts, 200)
    assert res.diverged.tolist() == [False, False, True]
    assert np.isfinite(res.x).all() and np.isfinite(res.loss).all()
    assert "run (2,): diverged at step" in res.report()
    assert float(res.loss[-1, 0]) < float(res.loss[0, 0])


def test_noisy_functions_are_reproducible_and_batched_equals_separate(backend):
    functions = _functions()
    if not hasattr(functions, "noisy"):
        pytest.skip("refopt.functions has no noisy() yet")
    f = functions.noisy("rosenbrock", 0.5, seed=3)
    starts = np.array([[-1.2, 1.0], [0.5, -0.5]])
    lrs = np.array([[1e-3], [2e-3]])
    res = run(rules.get("adam", lr=lrs), f, backend.asarray(starts), 40)
    again = run(rules.get("adam", lr=lrs), f, backend.asarray(starts), 40)
    np.testing.assert_array_equal(backend.to_numpy(res.x), backend.to_numpy(again.x))
    for i in range(2):
        single = run(rules.get("adam", lr=float(lrs[i, 0])), f, backend.asarray(starts[i]), 40)
        np.testing.assert_array_equal(backend.to_numpy(res.x)[:, i], backend.to_numpy(single.x))
    other = run(rules.get("adam", lr=lrs), functions.noisy("rosenbrock", 0.5, seed=4), backend.asarray(starts), 40)
    assert not np.array_equal(backend.to_numpy(other.x), backend.to_numpy(res.x))
