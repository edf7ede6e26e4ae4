"""refopt against torch.optim, step by step, over many random problems.

For every rule that torch.optim has (SGD, Adam, AdamW, Adam(amsgrad=True), RAdam, RMSprop,
Adagrad, Adadelta, NAdam, Adamax) the harness in ``_torchref`` draws 120 problems from a seeded NumPy
Generator: hyper-parameters (every flag combination several times, weight decay 0 and
non-zero, maximize, Nesterov only where torch allows it), parameters of a few shapes
(one of them a dict of two arrays, which torch receives as a parameter list), and
gradients that are either a fresh random sequence or a non-linear function of θ (so that
weight decay and the trajectory itself feed back into the gradients).  Each problem runs
20 steps in refopt (NumPy) and in torch, and every step's parameters are compared:

* float64, torch's single-tensor path (foreach=False, the CPU default) and its foreach
  path: |refopt - torch| <= 1e-12 · max |θ| the element has had so far;
* float32, single-tensor path: the difference in float32 ulps of that same magnitude is
  within a bound derived step by step from the roundings that can fall differently
  (``_torchref.ulp_bound``: one ulp per step for θ - u, plus 4 roundings of the update
  where refopt mirrors torch's evaluation order, 8 for the paper's β m + (1-β) g form of
  the moving averages, and 2 per step carried by the moving averages), twice that when the
  gradients depend on θ (the feedback grows rounding differences), and for centered RMSprop on
  slowly varying gradients -- where √(v - ḡ²) cancels catastrophically and torch's own
  float32 run is dozens of ulps from float64 -- four times torch's own float32 error.
  The residual is not an ordering difference: on CPU, torch's addcmul, lerp and
  add(alpha=) kernels evaluate a + b·c as one fused multiply-add (one rounding), which
  the array API cannot express.

The final states (moments, buffers, accumulators) are compared in float64 as well.
Rules whose module is not importable yet are skipped with the import error as reason.
``python tests/_torchref.py`` prints the largest float32 error of every rule and option.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import refopt as ro  # noqa: E402

import _torchref as T  # noqa: E402

pytestmark = pytest.mark.torch

VARIANTS = [(name, v) for name, spec in T.RULES.items() for v in spec["variants"]]
IDS = [f"{n}-{v}" for n, v in VARIANTS]


def require_rule(name: str) -> None:
    """Skip (only) when the rule's module cannot be imported yet."""
    try:
        ro.rules.rule_class(name)
    except ImportError as exc:  # ModuleNotFoundError included; any other error fails the test
        pytest.skip(f"refopt rule {name!r} is not importable yet ({type(exc).__name__}: {exc})")


@functools.lru_cache(maxsize=None)
def torch_runs(name: str, dtype: str, foreach: bool = False) -> tuple[T.Run, ...]:
    return tuple(T.run_torch(c, np.dtype(dtype).type, foreach) for c in T.cases(name))


@functools.lru_cache(maxsize=None)
def refopt_runs(name: str, variant: str, dtype: str) -> tuple[T.Run, ...]:
    extra = T.RULES[name]["variants"][variant][0]
    return tuple(T.run_refopt(c, np.dtype(dtype).type, extra) for c in T.cases(name))


def _where(err: np.ndarray) -> str:
    step, elem = np.unravel_index(int(np.argmax(np.where(np.isfinite(err), err, np.inf))), err.shape)
    return f"step {step}, element {elem}"


# ---------------------------------------------------------------------------------------
# the cases themselves
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(T.RULES))
def test_cases_cover_every_option(name):
    cs = T.cases(name)
    assert len(cs) >= 100
    combos = {T.combo_label(c) for c in T.flag_combos(name)}
    for kind in ("random", "nonlinear"):
        assert {c.label for c in cs if c.grads == kind} == combos, kind
    assert any(isinstance(c.shape, dict) for c in cs) and any(isinstance(c.shape, tuple) for c in cs)
    assert any(c.hyper["weight_decay"] == 0 for c in cs) and any(c.hyper["weight_decay"] > 0 for c in cs)
    assert {c.hyper["maximize"] for c in cs} == {False, True}
    if name == "sgd":  # Nesterov drawn only where torch accepts it
        nest = [c for c in cs if c.hyper["nesterov"]]
        assert nest and all(c.hyper["momentum"] > 0 and c.hyper["dampening"] == 0 for c in nest)
    # the cases are a pure function of the seed
    again = T.cases.__wrapped__(name)
    assert all(
        a.hyper == b.hyper and all(np.array_equal(x, y) for x, y in zip(a.theta0, b.theta0))
        for a, b in zip(cs, again)
    )


def test_coupled_gradients_depend_on_params():
    c = next(c for c in T.cases("adam") if c.grads == "nonlinear")
    g0 = c.grad(0, c.theta0)
    g1 = c.grad(0, [th + 0.1 for th in c.theta0])
    assert all(not np.allclose(a, b) for a, b in zip(g0, g1))


# ---------------------------------------------------------------------------------------
# float64: 1e-12 relative, every step, both torch code paths
# ---------------------------------------------------------------------------------------


def _check64(name, got_runs, ref_runs, what):
    bad, worst = [], 0.0
    for c, got, ref in zip(T.cases(name), got_runs, ref_runs):
        err = T.rel_error(got.traj, ref.traj)
        worst = max(worst, float(err.max()))
        if not err.max() <= T.RTOL64:
            bad.append(f"{c}\n    params: max rel error {err.max():.3g} at {_where(err)}")
        for slot, ref_s in ref.state.items():
            if slot not in got.state:
                bad.append(f"{c}\n    torch has state {slot!r} that refopt lacks (slots {list(got.state)})")
                continue
            e = T.state_rel_error(got.state[slot], ref_s)
            if not e <= T.RTOL64:
                bad.append(f"{c}\n    state {slot!r}: max rel error {e:.3g}")
    assert not bad, f"{len(bad)} disagreements with torch.optim ({what}); first ones:\n" + "\n".join(bad[:8])
    return worst


@pytest.mark.parametrize("name,variant", VARIANTS, ids=IDS)
def test_float64_matches_single_tensor_torch(name, variant):
    require_rule(name)
    _check64(name, refopt_runs(name, variant, "float64"), torch_runs(name, "float64"), "float64, foreach=False")


@pytest.mark.parametrize("name", list(T.RULES))
def test_float64_matches_foreach_torch(name):
    require_rule(name)
    variant = next(iter(T.RULES[name]["variants"]))
    _check64(name, refopt_runs(name, variant, "float64"), torch_runs(name, "float64", True), "float64, foreach=True")


# ---------------------------------------------------------------------------------------
# float32: a few ulps
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,variant", VARIANTS, ids=IDS)
def test_float32_within_a_few_ulps(name, variant, record_property):
    require_rule(name)
    bad, worst, share = [], {}, {}
    for c, got, ref in zip(T.cases(name), refopt_runs(name, variant, "float32"), torch_runs(name, "float32")):
        err = T.ulp_error(got.traj, ref.traj)
        ref64 = torch_runs(name, "float64")[c.index].traj
        own = float(T.ulp_error(ref.traj, ref64).max()) if T.ill_conditioned(c) else None
        bound = T.ulp_bound(c, variant, ref64, own)
        kind = c.grads + ("/ill-conditioned" if own is not None else "")
        worst[kind] = max(worst.get(kind, 0.0), float(err.max()))
        share[kind] = max(share.get(kind, 0.0), float(np.max(err / np.maximum(bound, 1e-300))))
        if not np.all(err <= bound):
            at = np.unravel_index(int(np.argmax(err - bound)), err.shape)
            bad.append(f"{c}\n    {err[at]:.1f} ulp (bound {bound[at]:.1f}) at step {at[0]}, element {at[1]}")
    for kind, e in worst.items():
        record_property(f"max_ulp_{kind}", e)
        record_property(f"max_share_of_bound_{kind}", share[kind])
    assert not bad, f"{len(bad)} cases beyond the float32 bound; first ones:\n" + "\n".join(bad[:8])


def test_float32_lerp_is_bit_exact_on_the_first_step():
    """Where no fused multiply-add can differ (β1 = 0, no weight decay: m = g exactly), the
    first Adam step with ema="lerp" is the same float32 number as torch's."""
    rng = np.random.default_rng(7)
    theta = rng.standard_normal(33).astype(np.float32)
    g = rng.standard_normal(33).astype(np.float32)
    p = torch.nn.Parameter(torch.tensor(theta))
    p.grad = torch.tensor(g)
    opt = torch.optim.Adam([p], lr=0.01, betas=(0.0, 0.99), eps=1e-6, foreach=False)
    opt.step()
    rule = ro.rules.get("adam", lr=0.01, betas=(0.0, 0.99), eps=1e-6, ema="lerp")
    # v_1 = 0.99·0 + (0.01 g) g has a single rounding in both (the product of zeros is exact)
    new, _ = rule.step(theta, g, rule.init(theta))
    np.testing.assert_array_equal(new, p.detach().numpy())
