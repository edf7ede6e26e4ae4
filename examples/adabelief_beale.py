"""AdaBelief on Beale's function: reproduce the end points of the paper's official animation.

The official AdaBelief repository shows SGD with momentum, Adam and AdaBelief on Beale's function
from (-2.5, -2.5) for 500 frames; the last frame has AdaBelief at the optimum (3, 0.5), Adam near
(2.1, 0.15) and SGD near (-0.95, -0.4). No learning rates are published. Optimizing
log(1 + Beale)/10 (the animation's z-range suggests that objective) with AdaBelief and Adam at
lr 1e-2 and SGD (momentum 0.9) at lr 5e-3 reproduces all three end points.
Run: python examples/adabelief_beale.py
"""

import numpy as np

import refopt as ro

f = ro.functions.get("log_beale")
x0 = np.array(f.start)
for label, rule in (
    ("adabelief", ro.rules.adabelief(lr=1e-2)),
    ("adam", ro.rules.adam(lr=1e-2)),
    ("sgd+momentum", ro.rules.sgd(lr=5e-3, momentum=0.9)),
):
    result = ro.run(rule, f, x0, steps=500)
    end = result.x[-1]
    print(f"{label:<13} ends at ({end[0]:+.3f}, {end[1]:+.3f}), distance to the optimum "
          f"{np.linalg.norm(end - np.array(f.minimizers[0])):.3g}")
