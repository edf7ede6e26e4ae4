"""Check a hand-written NumPy port of Adam against refopt's golden vectors -- without refopt.

Everything a port needs is in one JSON file, ``specs/vectors/adam.json`` (described in
``specs/README.md``): inputs, the expected parameters and state after every step, and a
tolerance class per field.  This script reads it with ``json`` and ``numpy`` only, which is
what a port in any other language would do:

    python examples/check_numpy_port.py                      # specs/vectors/adam.json
    python examples/check_numpy_port.py path/to/adam.json

It checks the groups whose options this port implements (the paper's Adam, coupled L2 weight
decay), skips the others, and prints per case the first step and element that differ.  Exit
status 0 when every checked case passes, 1 otherwise.

To see it catch a bug, put ε inside the square root in ``adam_step`` below
(``np.sqrt(v / bc2 + eps)``): the float64 cases then fail at step t = 1.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
DTYPES = {"float64": np.float64, "float32": np.float32}


# ---------------------------------------------------------------------------------------
# the port under test: Adam (Kingma & Ba, Algorithm 1), ε added after the bias correction
# ---------------------------------------------------------------------------------------


def adam_step(p, g, m, v, t, lr, beta1, beta2, eps, weight_decay):
    """One Adam step on arrays of one dtype; Python floats for the scalars (they do not promote)."""
    if weight_decay != 0.0:
        g = g + weight_decay * p
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * g * g
    bc1 = 1.0 - beta1**t
    bc2 = 1.0 - beta2**t
    denom = np.sqrt(v) / math.sqrt(bc2) + eps
    return p - (lr / bc1) * m / denom, m, v


# the options of refopt's adam this port follows; other groups are skipped
SUPPORTED = {"amsgrad": False, "decoupled_weight_decay": False, "maximize": False,
             "eps_mode": "after_bias_correction", "ema": "multiply_add", "eps_root": 0.0, "bias_correction": True}


# ---------------------------------------------------------------------------------------
# reading the vectors and comparing (see "tolerances" at the top of the file)
# ---------------------------------------------------------------------------------------


def decode(values, dtype):
    """A JSON list of numbers ("nan", "inf", "-inf" as strings) as a flat array of ``dtype``."""
    return np.array([NONFINITE[x] if isinstance(x, str) else x for x in values], dtype=np.float64).astype(DTYPES[dtype])


def within(expected, actual, tolerance):
    """Elementwise pass/fail under a tolerance class: exact, ulp:N or rtol:X (norm-wise over the field)."""
    e, a = expected.astype(np.float64), actual.astype(np.float64)
    with np.errstate(invalid="ignore"):
        err = np.where((e == a) | (np.isnan(e) & np.isnan(a)), 0.0, np.abs(a - e))
    err = np.where(np.isnan(err), np.inf, err)
    finite = np.abs(e[np.isfinite(e)])
    scale = finite.max() if finite.size else 0.0
    kind, _, bound = tolerance.partition(":")
    if kind == "exact":
        limit = 0.0
    elif kind == "ulp":
        limit = float(bound) * float(np.spacing(expected.dtype.type(scale)))
    elif kind == "rtol":
        limit = float(bound) * scale
    else:
        raise ValueError(f"unknown tolerance class {tolerance!r}")
    return err <= limit


def check_case(group, case):
    """None when the case passes, else a message naming the first differing step and element."""
    dtype, hyper = group["dtype"], group["hyper"]
    shape = case["shape"]
    beta1, beta2 = hyper["betas"]
    p = decode(case["params0"], dtype).reshape(shape)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    expected = {step["t"]: step for step in case["steps"]}  # the long chain records checkpoints only
    for t, g in enumerate(case["grads"], start=1):
        g = decode(g, dtype).reshape(shape)
        p, m, v = adam_step(p, g, m, v, t, hyper["lr"], beta1, beta2, hyper["eps"], hyper["weight_decay"])
        assert p.dtype == DTYPES[dtype], f"the port changed the dtype to {p.dtype}"
        if t not in expected:
            continue
        for field, actual in (("params", p), ("state.m", m), ("state.v", v)):
            want = expected[t]["params"] if field == "params" else expected[t]["state"][field[len("state."):]]
            want = decode(want, dtype).reshape(shape)
            tolerance = case["tolerance"][field]
            ok = within(want.reshape(-1), actual.reshape(-1), tolerance)
            if not ok.all():
                i = int(np.argmin(ok))
                return (f"step t={t}, {field}[{i}]: expected {float(want.reshape(-1)[i])!r}, "
                        f"got {float(actual.reshape(-1)[i])!r} (tolerance {tolerance})")
    return None


def main(argv):
    path = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "specs" / "vectors" / "adam.json"
    if not path.is_file():
        print(f"{path} not found (generate it with `refopt vectors --write`)", file=sys.stderr)
        return 2
    data = json.loads(path.read_text(encoding="utf-8"))
    failures = checked = skipped = 0
    for group in data["groups"]:
        if any(group["hyper"].get(k, v) != v for k, v in SUPPORTED.items()):
            skipped += 1
            continue
        for case in group["cases"]:
            checked += 1
            # the huge-gradient cases overflow g² to inf in float32 on purpose: no warnings
            with np.errstate(over="ignore", invalid="ignore"):
                problem = check_case(group, case)
            flags = ", ".join(case["flags"])
            if problem:
                failures += 1
                print(f"FAIL {case['id']} [{group['dtype']}] ({flags}): {problem}")
            else:
                print(f"ok   {case['id']} [{group['dtype']}] ({flags})")
    print(f"{checked - failures} of {checked} cases pass; {skipped} groups use options this port does not implement")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
