"""Sweep 10,000 Adam configurations on Rosenbrock in one batched run.

Hyper-parameters may be arrays that broadcast against the parameters: here lr and β1 have shape
(K, 1) and the parameters (K, 2), so K = 10,000 configurations advance together in each step, and
each row equals the run you would get with those scalars alone. Run:
python examples/sweep_thousands.py [K] [steps]
"""

import sys
import time

import numpy as np

import refopt as ro

K = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
side = int(round(K**0.5))
lr, beta1 = np.meshgrid(np.geomspace(1e-4, 1.0, side), np.linspace(0.0, 0.99, side))
lr, beta1 = lr.reshape(-1, 1), beta1.reshape(-1, 1)

rule = ro.rules.adam(lr=lr, betas=(beta1, 0.999))
f = ro.functions.get("rosenbrock")
x0 = np.tile(np.asarray(f.start), (lr.shape[0], 1))

start = time.perf_counter()
with np.errstate(over="ignore", invalid="ignore"):
    result = ro.run(rule, f, x0, steps)
elapsed = time.perf_counter() - start

final = np.where(result.diverged, np.inf, np.asarray(result.loss[-1]))
best = int(np.argmin(final))
print(f"{lr.shape[0]} configurations x {steps} steps in {elapsed:.2f} s "
      f"({lr.shape[0] * steps / elapsed:,.0f} configuration-steps per second)")
print(f"diverged: {int(np.sum(result.diverged))}")
print(f"best: lr {lr[best, 0]:.4g}, beta1 {beta1[best, 0]:.3f}, final loss {final[best]:.3g}, "
      f"x = {np.asarray(result.x[-1, best]).tolist()}")

# the batched row equals a separate run with those scalars
single = ro.run(ro.rules.adam(lr=float(lr[best, 0]), betas=(float(beta1[best, 0]), 0.999)), f, x0[best], steps)
assert np.array_equal(np.asarray(single.x[-1]), np.asarray(result.x[-1, best]))
print("the best row equals its separate run bit for bit")
