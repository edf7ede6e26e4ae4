"""Train refopt's small transformer with AdaBelief, on NumPy -- or on a GPU with CuPy, unchanged.

    python examples/train_transformer.py            # NumPy, float32, 300 steps
    python examples/train_transformer.py --cupy     # the same program on CuPy arrays (needs a GPU)

The model (refopt.problems.transformer: one pre-LayerNorm decoder block, width 32, 2 heads,
context 64, about 21k parameters) and its exact gradient are written against the array API, so
the parameters' library decides where everything runs.
"""

import sys

import numpy as np

import refopt as ro

problem = ro.problems.get("transformer")
theta = np.asarray(problem.init(seed=0), dtype=np.float32)
if "--cupy" in sys.argv:
    import cupy

    theta = cupy.asarray(theta)
rule = ro.rules.adabelief(lr=3e-3)
state = rule.init(theta)
for step in range(300):
    X, y = problem.example_batch(16, seed=step, like=theta)  # 16 windows of refopt's character corpus
    loss, grad = problem.loss_grad(theta, X, y)
    theta, state = rule.step(theta, grad, state)
    if step % 50 == 0 or step == 299:
        print(f"step {step:3d}  loss {float(loss):.4f}")
