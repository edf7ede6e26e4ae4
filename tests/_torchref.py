"""Harness for the step-by-step cross-check of refopt's rules against torch.optim.

For every rule that torch.optim has, :func:`cases` draws a deterministic list of random
problems (hyper-parameters, parameter shapes, gradient sequences) from a seeded NumPy
Generator, cycling through every combination of the rule's flags so that each one is
covered several times.  :func:`run_torch` and :func:`run_refopt` run one case for
``STEPS`` steps and return the whole parameter trajectory; :func:`rel_error` and
:func:`ulp_error` measure the disagreement.

Error floors.  A parameter that crosses zero has no meaningful relative error, so each
element is measured against the largest magnitude it has had so far on torch's
trajectory (the running maximum of |θ| over steps 0..t): rounding errors of θ - update
are ulps of the operands, and the operands were never larger than that.

Run ``python tests/_torchref.py`` for the table of the largest float32 error (in ulps)
of every rule and option; the tests assert the bounds in :data:`ULP_BOUND`.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

STEPS = 20
N_CASES = 120  # per rule; >= 100 and a whole number of rounds for most flag sets
RTOL64 = 1e-12

# ---------------------------------------------------------------------------------------
# rules, their torch counterparts and the flags whose every combination is covered
# ---------------------------------------------------------------------------------------

# refopt-only options that select torch's conventions (update-rules.md §3, §6)
RADAM_TORCH = {"threshold": "rho>5", "warmup": "sgd"}

# name -> (torch class, fixed torch kwargs, flag names, variants)
# a variant is (extra refopt hyper-parameters, float32 bound in ulps)
RULES: dict[str, dict[str, Any]] = {
    "sgd": dict(torch="SGD", fixed={}, flags=("momentum", "dampening", "nesterov", "maximize", "weight_decay"),
                variants={"default": ({}, 4)}),
    "adam": dict(torch="Adam", fixed={}, flags=("amsgrad", "decoupled_weight_decay", "maximize", "weight_decay"),
                 variants={"lerp": ({"ema": "lerp"}, 4), "multiply_add": ({}, 8)}),
    "adamw": dict(torch="AdamW", fixed={}, flags=("amsgrad", "maximize", "weight_decay"),
                  variants={"lerp": ({"ema": "lerp"}, 4), "multiply_add": ({}, 8)}),
    "amsgrad": dict(torch="Adam", fixed={"amsgrad": True}, flags=("decoupled_weight_decay", "maximize", "weight_decay"),
                    variants={"lerp": ({"ema": "lerp"}, 4), "multiply_add": ({}, 8)}),
    "radam": dict(torch="RAdam", fixed={}, flags=("decoupled_weight_decay", "maximize", "weight_decay"),
                  variants={"lerp": ({**RADAM_TORCH, "ema": "lerp"}, 4), "multiply_add": ({**RADAM_TORCH}, 8)}),
    "rmsprop": dict(torch="RMSprop", fixed={}, flags=("momentum", "centered", "maximize", "weight_decay"),
                    variants={"lerp": ({"ema": "lerp"}, 4), "multiply_add": ({}, 8)}),
    "adagrad": dict(torch="Adagrad", fixed={}, flags=("lr_decay", "initial_accumulator_value", "maximize", "weight_decay"),
                    variants={"default": ({}, 4)}),
    "adadelta": dict(torch="Adadelta", fixed={}, flags=("maximize", "weight_decay"),
                     variants={"default": ({}, 4)}),
    "nadam": dict(torch="NAdam", fixed={}, flags=("decoupled_weight_decay", "maximize", "weight_decay"),
                  variants={"lerp": ({"ema": "lerp"}, 4), "multiply_add": ({}, 8)}),
    "adamax": dict(torch="Adamax", fixed={}, flags=("maximize", "weight_decay"),
                   variants={"lerp": ({"ema": "lerp"}, 4), "multiply_add": ({}, 8)}),
}

# the rules written by the lead (always importable); the others may not exist yet
CORE = ("sgd", "adam", "adamw", "amsgrad", "radam")

# torch state key -> refopt slot name, per rule family (compared at the end in float64)
STATE_NAMES = {
    "sgd": {"momentum_buffer": "b"},
    "adam": {"exp_avg": "m", "exp_avg_sq": "v", "max_exp_avg_sq": "v_max"},
    "adamw": {"exp_avg": "m", "exp_avg_sq": "v", "max_exp_avg_sq": "v_max"},
    "amsgrad": {"exp_avg": "m", "exp_avg_sq": "v", "max_exp_avg_sq": "v_max"},
    "radam": {"exp_avg": "m", "exp_avg_sq": "v"},
    "rmsprop": {"square_avg": "v", "grad_avg": "g_bar", "momentum_buffer": "b"},
    "adagrad": {"sum": "s"},
    "adadelta": {"square_avg": "v", "acc_delta": "u"},
    "nadam": {"exp_avg": "m", "exp_avg_sq": "v"},
    "adamax": {"exp_avg": "m", "exp_inf": "u"},
}

ULP_BOUND = {(name, v): spec["variants"][v][1] for name, spec in RULES.items() for v in spec["variants"]}

# The float32 bound, derived step by step (no constant tuned on one CPU).  Both runs start
# from the same θ0 and, at step s, compute θ_s = fl(θ_{s-1} - u_s).  Their difference grows
# per step by at most
#   * 1 ulp of max|θ| so far: each run rounds θ - u once (≤ ½ ulp each; 2 ulps in all where
#     a result may fall in the next binade), and torch fuses some multiply-adds into one FMA
#     where the array API rounds twice, which the next item counts;
#   * the difference of the two u_s: u_s is the end of a chain of c roundings that can fall
#     differently (c = ULP_BOUND of the variant: 4 where refopt evaluates in torch's order,
#     8 for β m + (1-β) g against torch's lerp), plus 2 per earlier step for the moving
#     averages, which carry each step's two roundings forward; each is a relative error of at
#     most ε = 2⁻²⁴ of the step's magnitude.  The magnitude is the largest |θ_s - θ_{s-1}| of
#     any element so far on torch's float64 run (one element's update can cancel to 0 while
#     its rounding errors stay those of the large operands).
# So after t steps the difference is at most Σ_{s≤t} (1 + (c + 2s)·ε·U_s / ulp(max|θ|)) ulps.
# This is a worst case (errors adding with one sign); the observed maxima (``python
# tests/_torchref.py``) are several times smaller, and a wrong constant in a float32 step
# (a β or ε rounded in float64, or not at all) moves the result by ~|u|/ulp, far above it.
EPS32 = float(np.finfo(np.float32).eps) / 2  # unit roundoff 2⁻²⁴

# θ-dependent gradients feed every rounding difference back into the next gradient; over
# 20 steps of an expanding map (maximize, momentum) that grows them (SGD: 6 ulp observed)
COUPLED_FACTOR = 2.0

# Centered RMSprop divides by √(v - ḡ²), which cancels catastrophically when the gradient
# hardly changes (the θ-dependent sequences): torch's float32 CPU kernels fuse addcmul and
# lerp into one FMA (one rounding) where the array API rounds twice, and the cancellation
# magnifies that 1-ulp difference in v or ḡ.  torch's own float32 trajectory is then
# dozens of ulps from float64, so these cases are held to a multiple of that instead.
ILL_CONDITIONED_FACTOR = 4.0


def ill_conditioned(case: "Case") -> bool:
    return case.rule == "rmsprop" and bool(case.hyper.get("centered")) and case.grads == "nonlinear"


def ulp_bound(case: "Case", variant: str, ref64: np.ndarray, torch_own: float | None = None) -> np.ndarray:
    """The float32 bound of one case, per step and element (shape of the trajectory), from
    the derivation above; ``ref64`` is torch's float64 trajectory and ``torch_own`` torch's
    float32 error against it (needed only for :func:`ill_conditioned` cases)."""
    c = ULP_BOUND[(case.rule, variant)]
    r = ref64.astype(np.float64)
    step = np.max(np.abs(np.diff(r, axis=0)), axis=1)  # largest |θ_s - θ_{s-1}|, s = 1..t
    big = np.maximum.accumulate(step)  # U_s
    s = np.arange(1, r.shape[0])
    top = np.maximum(floor(r), np.finfo(np.float32).tiny)
    unit = np.spacing(top.astype(np.float32)).astype(np.float64)
    # ½ ulp of each run's rounded θ: one ulp of max|θ|, two where the float32 runs (within
    # 2⁻¹⁰ relative of float64, far more than their few hundred ulps) may reach the next binade
    rounding = np.spacing((top * (1 + 2.0**-10)).astype(np.float32)).astype(np.float64) / unit
    per_step = rounding[1:] + (c + 2.0 * (s[:, None] - 1)) * EPS32 * big[:, None] / unit[1:]
    bound = np.concatenate([np.zeros((1, r.shape[1])), np.cumsum(per_step, axis=0)])
    if case.grads == "nonlinear":
        bound = bound * COUPLED_FACTOR
    if ill_conditioned(case):
        bound = np.maximum(bound, ILL_CONDITIONED_FACTOR * torch_own)
    return bound


def flag_combos(name: str) -> list[dict[str, bool]]:
    """Every valid combination of a rule's flags ('weight_decay': True means λ > 0, ...)."""
    flags = RULES[name]["flags"]
    out = []
    for values in itertools.product((False, True), repeat=len(flags)):
        combo = dict(zip(flags, values))
        if name == "sgd" and combo["nesterov"] and (not combo["momentum"] or combo["dampening"]):
            continue  # torch: Nesterov needs momentum > 0 and dampening = 0
        out.append(combo)
    return out


def combo_label(combo: dict[str, bool]) -> str:
    on = [k for k, v in combo.items() if v]
    return "+".join(on) if on else "plain"


# ---------------------------------------------------------------------------------------
# case generation
# ---------------------------------------------------------------------------------------

SHAPES = [(7,), (3, 4), {"w": (4, 3), "b": (3,)}, (2, 3, 2), (19,)]


def _logu(rng, lo, hi) -> float:
    return float(10.0 ** rng.uniform(np.log10(lo), np.log10(hi)))


def _beta1(rng) -> float:
    u = rng.uniform()
    if u < 0.1:
        return 0.0
    if u < 0.2:  # torch's lerp takes its other branch for weights >= 0.5
        return float(rng.uniform(0.05, 0.5))
    return float(rng.uniform(0.5, 0.99))


def _draw(name: str, rng, combo: dict[str, bool]) -> dict[str, Any]:
    """Hyper-parameters by torch's names (which are also refopt's)."""
    wd = _logu(rng, 1e-4, 0.3) if combo.get("weight_decay") else 0.0
    h: dict[str, Any] = {"weight_decay": wd, "maximize": combo["maximize"]}
    if name == "sgd":
        h.update(
            lr=_logu(rng, 1e-3, 0.1),
            momentum=float(rng.uniform(0.1, 0.99)) if combo["momentum"] else 0.0,
            dampening=float(rng.uniform(0.05, 1.0)) if combo["dampening"] else 0.0,
            nesterov=combo["nesterov"],
        )
    elif name in ("adam", "adamw", "amsgrad", "radam"):
        h.update(
            lr=_logu(rng, 1e-4, 3e-2),
            betas=(_beta1(rng), 1.0 - _logu(rng, 1e-4, 0.5)),
            eps=_logu(rng, 1e-10, 1e-4),
        )
        for flag in ("amsgrad", "decoupled_weight_decay"):
            if flag in combo:
                h[flag] = combo[flag]
    elif name == "rmsprop":
        h.update(
            lr=_logu(rng, 1e-4, 3e-2),
            alpha=1.0 - _logu(rng, 1e-3, 0.3),
            eps=_logu(rng, 1e-10, 1e-4),
            momentum=float(rng.uniform(0.1, 0.95)) if combo["momentum"] else 0.0,
            centered=combo["centered"],
        )
    elif name == "adagrad":
        h.update(
            lr=_logu(rng, 1e-3, 0.3),
            lr_decay=_logu(rng, 1e-3, 0.3) if combo["lr_decay"] else 0.0,
            initial_accumulator_value=float(rng.uniform(0.01, 1.0)) if combo["initial_accumulator_value"] else 0.0,
            eps=_logu(rng, 1e-12, 1e-6),
        )
    elif name == "adadelta":
        h.update(lr=_logu(rng, 0.05, 2.0), rho=float(rng.uniform(0.5, 0.99)), eps=_logu(rng, 1e-8, 1e-4))
    elif name in ("nadam", "adamax"):
        h.update(lr=_logu(rng, 1e-4, 3e-2), betas=(_beta1(rng), 1.0 - _logu(rng, 1e-4, 0.5)),
                 eps=_logu(rng, 1e-10, 1e-4))
        if name == "nadam":
            h.update(momentum_decay=_logu(rng, 1e-3, 1e-1), decoupled_weight_decay=combo["decoupled_weight_decay"])
    else:  # pragma: no cover
        raise KeyError(name)
    return h


@dataclass
class Case:
    rule: str
    index: int
    label: str  # the flag combination
    hyper: dict[str, Any]  # torch's names and values (refopt's too)
    shape: Any  # a tuple, or a dict of tuples (a tree of two arrays)
    grads: str  # "random": a fresh sequence, independent of θ; "nonlinear": g(θ)
    theta0: list[np.ndarray] = field(repr=False)
    random_grads: list[list[np.ndarray]] = field(repr=False)  # [step][leaf]
    coef: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(repr=False)  # nonlinear g(θ)

    @property
    def keys(self):
        return list(self.shape) if isinstance(self.shape, dict) else None

    def leaf_shapes(self):
        return list(self.shape.values()) if isinstance(self.shape, dict) else [self.shape]

    def grad(self, t: int, leaves: list[np.ndarray]) -> list[np.ndarray]:
        """Gradients of step ``t`` (0-based) in the leaves' dtype, computed in float64."""
        if self.grads == "random":
            return [g.astype(th.dtype) for g, th in zip(self.random_grads[t], leaves)]
        out = []
        for th, (a, b, c) in zip(leaves, self.coef):
            x = th.astype(np.float64)
            # a smooth, non-linear, mildly non-convex field: trajectories couple to θ
            out.append((a * x + b + c * np.sin(3.0 * x)).astype(th.dtype))
        return out

    def __str__(self):
        return f"{self.rule}[{self.index}] {self.label} {self.grads} shape={self.shape} {self.hyper}"


@functools.lru_cache(maxsize=None)
def cases(name: str, n: int = N_CASES) -> tuple[Case, ...]:
    """``n`` deterministic cases; case i has flag combination i mod (number of combinations)
    and, in alternate rounds over the combinations, random or θ-dependent gradients."""
    combos = flag_combos(name)
    seed = 20240 + sorted(RULES).index(name)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        combo = combos[i % len(combos)]
        hyper = _draw(name, rng, combo)
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        kind = "nonlinear" if (i // len(combos)) % 2 == 1 else "random"
        shapes = list(shape.values()) if isinstance(shape, dict) else [shape]
        theta0 = [rng.standard_normal(s) for s in shapes]
        scale = _logu(rng, 1e-2, 10.0)
        random_grads = [[scale * rng.standard_normal(s) for s in shapes] for _ in range(STEPS)]
        if rng.uniform() < 0.1:  # exact zeros in the gradient (ε and empty moments matter)
            for gs in random_grads:
                for g in gs:
                    g[rng.uniform(size=g.shape) < 0.3] = 0.0
        coef = [
            (rng.uniform(0.2, 2.0, s), 0.5 * rng.standard_normal(s), rng.uniform(-1.0, 1.0, s)) for s in shapes
        ]
        out.append(Case(name, i, combo_label(combo), hyper, shape, kind, theta0, random_grads, coef))
    return tuple(out)


# ---------------------------------------------------------------------------------------
# runners
# ---------------------------------------------------------------------------------------


@dataclass
class Run:
    traj: np.ndarray  # (STEPS + 1, N): every leaf flattened and concatenated, step 0 = θ0
    state: dict[str, np.ndarray]  # refopt slot name -> leaves flattened and concatenated


def _concat(leaves) -> np.ndarray:
    return np.concatenate([np.asarray(x).reshape(-1) for x in leaves])


def run_torch(case: Case, dtype, foreach: bool = False) -> Run:
    import torch

    tdtype = {np.float32: torch.float32, np.float64: torch.float64}[np.dtype(dtype).type]
    spec = RULES[case.rule]
    params = [torch.nn.Parameter(torch.tensor(th, dtype=tdtype)) for th in case.theta0]
    cls = getattr(torch.optim, spec["torch"])
    # NAdam keeps its μ product in torch's default dtype: float64 runs use a float64 default
    saved = torch.get_default_dtype()
    torch.set_default_dtype(tdtype if tdtype == torch.float64 else saved)
    try:
        opt = cls(params, foreach=foreach, **{**case.hyper, **spec["fixed"]})
        traj = [_concat([p.detach().numpy() for p in params])]
        for t in range(STEPS):
            gs = case.grad(t, [p.detach().numpy() for p in params])
            for p, g in zip(params, gs):
                p.grad = torch.from_numpy(np.array(g, copy=True))
            opt.step()
            traj.append(_concat([p.detach().numpy() for p in params]))
    finally:
        torch.set_default_dtype(saved)
    names = STATE_NAMES.get(case.rule, {})
    state = {}
    for key, slot in names.items():
        got = [opt.state[p].get(key) for p in params]
        if all(isinstance(x, torch.Tensor) for x in got):
            state[slot] = _concat([x.detach().numpy() for x in got])
    return Run(np.stack(traj), state)


def run_refopt(case: Case, dtype, extra: dict[str, Any] | None = None, backend: str = "numpy") -> Run:
    import refopt as ro

    rule = ro.rules.get(case.rule, **case.hyper, **(extra or {}))
    if backend == "torch":
        import torch

        to, back = (lambda a: torch.from_numpy(np.array(a, copy=True))), (lambda x: x.numpy())
    else:
        to, back = (lambda a: np.array(a, copy=True)), np.asarray

    def tree(leaves):
        leaves = [to(x) for x in leaves]
        return dict(zip(case.keys, leaves)) if case.keys else leaves[0]

    def flat(t):
        return [back(x) for x in (t.values() if isinstance(t, dict) else [t])]

    p = tree([th.astype(dtype) for th in case.theta0])
    state = rule.init(p)
    traj = [_concat(flat(p))]
    for t in range(STEPS):
        g = tree(case.grad(t, flat(p)))
        p, state = rule.step(p, g, state)
        traj.append(_concat(flat(p)))
    slots = {k: _concat(flat(v)) for k, v in state.slots.items()}
    return Run(np.stack(traj), slots)


# ---------------------------------------------------------------------------------------
# error measures
# ---------------------------------------------------------------------------------------


def floor(ref_traj: np.ndarray) -> np.ndarray:
    """Per element and step: the largest |θ| on the reference trajectory up to that step."""
    return np.maximum.accumulate(np.abs(ref_traj.astype(np.float64)), axis=0)


def rel_error(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|got - ref| / max(|ref| so far) per element and step (inf where either is not finite)."""
    g, r = got.astype(np.float64), ref.astype(np.float64)
    err = np.abs(g - r) / np.maximum(floor(r), np.finfo(np.float64).tiny)
    return np.where(np.isfinite(g) & np.isfinite(r), err, np.inf)


def ulp_error(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|got - ref| in float32 ulps of max(|ref| so far), per element and step."""
    g, r = got.astype(np.float64), ref.astype(np.float64)
    unit = np.spacing(np.maximum(floor(r), np.finfo(np.float32).tiny).astype(np.float32)).astype(np.float64)
    err = np.abs(g - r) / unit
    return np.where(np.isfinite(g) & np.isfinite(r), err, np.inf)


def state_rel_error(got: np.ndarray, ref: np.ndarray) -> float:
    """Largest |got - ref| / max(|ref|, max |ref| of the state) (a moment crosses 0 too)."""
    g, r = got.astype(np.float64), ref.astype(np.float64)
    scale = max(float(np.max(np.abs(r))), np.finfo(np.float64).tiny)
    err = np.abs(g - r) / np.maximum(np.abs(r), scale)
    return float(np.max(np.where(np.isfinite(g) & np.isfinite(r), err, np.inf)))


# ---------------------------------------------------------------------------------------
# the float32 table for the closing note
# ---------------------------------------------------------------------------------------


def float32_table(backend: str = "numpy") -> list[tuple[str, str, str, float, float]]:
    """(rule, variant, flag combination, largest float32 ulp error of refopt against torch,
    largest float32 ulp error of torch against its own float64 run) over every case;
    combination "all/<grads>" rows summarise by gradient kind."""
    import refopt as ro

    rows = []
    for name, spec in RULES.items():
        try:
            ro.rules.rule_class(name)
        except ImportError as exc:
            rows.append((name, "-", f"not importable: {exc}", float("nan"), float("nan")))
            continue
        r32 = {c.index: run_torch(c, np.float32) for c in cases(name)}
        r64 = {c.index: run_torch(c, np.float64) for c in cases(name)}
        own = {i: float(ulp_error(r32[i].traj, r64[i].traj).max()) for i in r32}
        for variant, (extra, _) in spec["variants"].items():
            worst: dict[str, list[float]] = {}
            for c in cases(name):
                e = float(ulp_error(run_refopt(c, np.float32, extra, backend).traj, r32[c.index].traj).max())
                kind = "all/" + c.grads + ("/ill-conditioned" if ill_conditioned(c) else "")
                for key in (c.label, kind):
                    w = worst.setdefault(key, [0.0, 0.0])
                    w[0], w[1] = max(w[0], e), max(w[1], own[c.index])
            rows.extend((name, variant, k, *worst[k]) for k in sorted(worst, key=lambda k: (not k.startswith("all"), k)))
    return rows


if __name__ == "__main__":  # pragma: no cover
    import sys

    backend = sys.argv[1] if len(sys.argv) > 1 else "numpy"
    print(f"{'rule':9s} {'variant':13s} {'refopt':>7s} {'torch32':>8s}  options   (ulps vs torch float32; torch32: torch float32 vs float64)")
    for row in float32_table(backend):
        print(f"{row[0]:9s} {row[1]:13s} {row[3]:7.1f} {row[4]:8.1f}  {row[2]}")
