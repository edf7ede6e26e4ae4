"""diffGrad's synthetic functions: does the friction term keep diffGrad out of the local minima?

The diffGrad paper (Dubey et al., TNNLS 2020) runs Adam and diffGrad from x0 = -1 on three 1-D
functions with lr 0.1, β1 0.95, β2 0.999 for 299 updates. This script reruns that protocol,
including F2 as the official notebook actually coded its derivative, and prints where each
method ends. Run: python examples/diffgrad_toy_functions.py
"""

import numpy as np

import refopt as ro

adam = ro.rules.adam(lr=0.1, betas=(0.95, 0.999), eps_mode="inside_sqrt")  # the notebook's Adam
diffgrad = ro.rules.diffgrad(lr=0.1, betas=(0.95, 0.999))

print(f"{'function':<22} {'method':<9} {'final x':>10} {'f(x)':>10}   global minimizer")
for name in ("diffgrad_f1", "diffgrad_f2", "diffgrad_f2_notebook", "diffgrad_f3"):
    f = ro.functions.get(name)
    for label, rule in (("adam", adam), ("diffgrad", diffgrad)):
        result = ro.run(rule, f, np.array([-1.0]), steps=299)
        x = float(result.x[-1, 0])
        print(f"{name:<22} {label:<9} {x:>10.6f} {float(result.loss[-1]):>10.4g}   {f.minimizers[0][0]:.6f}")
