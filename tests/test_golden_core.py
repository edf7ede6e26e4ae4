"""The notes' golden values (update-rules.md §5) for SGD and the Adam family, on every backend."""

import numpy as np
import pytest

import refopt as ro
from conftest import golden_run

CASES = [
    ("sgd", dict(lr=0.01), [0.955, -1.9, 0.44675], [0.7989706978, -1.598345543, 0.2843380823]),
    ("sgd", dict(lr=0.01, momentum=0.9), [0.955, -1.9, 0.44675], [0.480220707, -0.9675077642, -0.04190836179]),
    ("sgd", dict(lr=0.01, momentum=0.9, dampening=0.5), [0.955, -1.9, 0.44675], [0.6413833016, -1.25879638, 0.1051964578]),
    ("sgd", dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.1), [0.9126, -1.8062, 0.397875],
     [0.376974119, -0.8291139656, -0.08187772372]),
    ("sgd", dict(lr=0.01, maximize=True), [1.045, -2.1, 0.55325], [1.255980592, -2.670209695, 0.8319819264]),
    ("adam", dict(), [0.999, -1.999, 0.499], [0.9950005817, -1.995000545, 0.4950008856]),
    ("adam", dict(weight_decay=0.1), [0.999, -1.999, 0.499], [0.9950005785, -1.995000539, 0.4950008855]),
    ("adam", dict(amsgrad=True), [0.999, -1.999, 0.499], [0.9950005817, -1.995000545, 0.4950008856]),
    ("amsgrad", dict(), [0.999, -1.999, 0.499], [0.9950005817, -1.995000545, 0.4950008856]),
    ("adamw", dict(), [0.99899, -1.99898, 0.498995], [0.9949506885, -1.994900658, 0.4949759905]),
    ("radam", dict(threshold="rho>5"), [0.9955, -1.99, 0.494675], [0.9776456946, -1.950668801, 0.473684462]),
]


@pytest.mark.parametrize("name,hyper,one,five", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_golden_values(name, hyper, one, five, backend):
    rule = ro.rules.get(name, **hyper)
    # the notes print 10 significant digits
    np.testing.assert_allclose(golden_run(rule, 1, backend), one, rtol=1e-9, atol=0)
    np.testing.assert_allclose(golden_run(rule, 5, backend), five, rtol=5e-10, atol=1e-10)
