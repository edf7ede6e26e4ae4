"""Gradient transforms shared by update rules: clip by value, by global norm, top fraction.

Each transform is a pure function of a parameter tree (one array, or a dict/list/tuple of
arrays) written against the array API standard; nothing passed in is modified.

Clip by value (torch ``clip_grad_value_`` in pytorch/pytorch ``torch/nn/utils/clip_grad.py``,
optax ``clip`` in google-deepmind/optax ``optax/transforms/_clipping.py`` @ 2edbcbe)::

    g_i <- clamp(g_i, -v, v)                                  fixed threshold v >= 0

Clip by global norm (torch ``clip_grad_norm_``, optax ``clip_by_global_norm``, same files),
n = sqrt(Σ_arrays Σ_i g_i²) before clipping::

    optax:  g <- g                      if n < max_norm        an exact select, no epsilon
            g <- (g / n) · max_norm     otherwise
    torch:  g <- g · min(max_norm / (n + 1e-6), 1)             always multiplied; n is the
                                                               norm of the per-array norms

Coordinate-wise clipping with an adaptive threshold (Pan & Li, arXiv 2306.00204; the authors'
``clip_top_coordinates``, copied in every optimizer file of panyan7/adam-vs-sgd
``torch_optimizer/`` @ d85d3a1)::

    a   = |concat(flatten(g_k) for every array k)|  sorted descending, N entries
    k   = int(N · c)                                Python's truncation of the float64 product
    τ   = a[k]                                      the (⌊N c⌋+1)-th largest magnitude
    τ  <- s · τ                                     threshold_scale s, in float64
    g_i <- clamp(g_i, -τ, τ)

with the authors' degenerate cases: c = 0 returns the gradient unchanged (τ is reported as
inf); c = 1 gives τ = 0, so every entry becomes 0.  The threshold is pooled over *all*
arrays of the tree and recomputed every step (no state).  When more than a (1 - c)
fraction of the entries are exactly 0 (unused embedding rows, say) the code's τ is 0 and
every entry is clipped to 0; ``zero_threshold`` names what to do about it:

``"zero_all"`` (default)
    rank all N entries, zeros included, exactly as the authors' code
    (``_get_top_coordinates_threshold``) does, so a mostly-zero gradient is zeroed.  It is
    the default because it is the operator the paper and its code define (the top c
    fraction of *all* coordinates), and clipped runs must reproduce the code's numbers.
``"nonzero"``
    rank only the N' non-zero magnitudes: k = int(N' · c), τ = the (k+1)-th largest of
    them.  Identical to ``"zero_all"`` whenever no entry is exactly 0, and never zeroes a
    gradient wholesale unless c = 1.  A refopt safeguard, not used by any known
    implementation; it ranks among the non-zeros always (rather than only as a fallback
    when τ would be 0) so that τ does not jump as the count of zeros crosses (1 - c)·N.

The threshold is computed where the code computes it: the (k+1)-th magnitude is taken on
the device, brought to the host as a float64 number (the code's ``float(...)``), scaled by
s there, and rounded once to each array's dtype when it is applied.  That is why it is
returned as a Python float, or a float64 NumPy array of the batch shape (see below), like
the other per-step scalars of the rules.  NaN in g poisons the sort (not handled by the
authors' code either).  ``clamp`` equals the code's ``g·[|g|<τ] + sign(g)·[|g|>=τ]·τ`` up
to the sign of zero results.

Batched configurations: ``batch_axes`` is the number of leading axes of every array that
index independent configurations (K runs advanced in one call).  τ is then computed per
index of those axes from that configuration's entries only, and ``fraction`` /
``threshold_scale`` may be arrays of per-configuration values that broadcast against the
batch shape (trailing axes of size 1 are allowed, so the ``(K, 1)`` arrays that batched
hyper-parameters use for ``(K, d)`` parameters work as they are).

Sources: Pan & Li, Toward Understanding Why Adam Converges Faster Than SGD for Transformers
(arXiv 2306.00204), code panyan7/adam-vs-sgd torch_optimizer/sgd_clip.py
(``clip_top_coordinates``, the same in every optimizer file); optax
optax/transforms/_clipping.py (``clip``, ``clip_by_global_norm``); PyTorch
torch/nn/utils/clip_grad.py (``clip_grad_value_``, ``clip_grad_norm_``).
"""

from __future__ import annotations

import math
from typing import Any

from . import _array, _tree
from .rules._base import Choice, Int, Real

__all__ = [
    "clip_by_value",
    "clip_by_global_norm",
    "clip_top_fraction",
    "top_fraction_threshold",
    "clamp",
    "threshold_like",
    "config_shape",
    "ZERO_THRESHOLD",
]

ZERO_THRESHOLD = ("zero_all", "nonzero")

_FRACTION = Real("fraction", 0.1, "fraction c of the coordinates to clip", low=0.0, high=1.0, high_open=False)
_SCALE = Real("threshold_scale", 1.0, "factor s applied to the threshold", low=0.0)
_BATCH_AXES = Int("batch_axes", 0, "leading axes that index independent configurations", low=0)
_ZERO = Choice("zero_threshold", "zero_all", "rank all entries or only the non-zero ones", choices=ZERO_THRESHOLD)
_CONVENTION = Choice("convention", "optax", "whose global-norm clipping to follow", choices=("optax", "torch"))


# ---------------------------------------------------------------------------------------
# fixed thresholds
# ---------------------------------------------------------------------------------------


def _float_leaves(tree: Any, what: str):
    leaves, structure, paths = _tree.flatten(tree, what)
    xp = _array.namespace(*leaves, what=what)
    for x, path in zip(leaves, paths):
        if not _array.is_real_floating(xp, x.dtype):
            raise TypeError(f"{path} has dtype {_array.dtype_name(x.dtype)}; clipping needs real floating arrays")
    return xp, leaves, structure


def clip_by_value(tree: Any, max_value: Any) -> Any:
    """Every entry clamped to ``[-max_value, max_value]`` (torch ``clip_grad_value_``, optax ``clip``).

    ``max_value`` is a number >= 0, or an array that broadcasts against every array of the
    tree (one threshold per configuration).
    """
    v = Real("max_value", 0.0, "", low=0.0).validate(max_value, "clip_by_value")
    xp, leaves, structure = _float_leaves(tree, "tree")
    out = []
    for g in leaves:
        bound = _array.lift(v, g)
        out.append(xp.clip(g, min=-bound, max=bound))
    return _tree.unflatten(structure, out)


def clip_by_global_norm(tree: Any, max_norm: float, *, convention: str = "optax") -> tuple[Any, Any]:
    """``(clipped tree, n)``: the tree rescaled so that its global L2 norm is at most ``max_norm``.

    ``n`` is the norm before clipping, a 0-d array next to the tree.  ``convention="optax"``
    keeps the tree unchanged when ``n < max_norm`` and otherwise computes ``(g / n) ·
    max_norm`` (an exact select; n = sqrt of the sum over arrays of Σ g²);
    ``convention="torch"`` always multiplies by ``min(max_norm / (n + 1e-6), 1)``, with n the
    norm of the per-array norms, so a clipped norm ends slightly below ``max_norm``.
    """
    m = Real("max_norm", 1.0, "", low=0.0, low_open=True).validate(max_norm, "clip_by_global_norm")
    if not _array.is_scalar(m):
        raise TypeError(f"clip_by_global_norm: max_norm must be a real number > 0; got an array of shape {m.shape}")
    convention = _CONVENTION.validate(convention, "clip_by_global_norm")
    xp, leaves, structure = _float_leaves(tree, "tree")
    if convention == "torch":
        # torch/nn/utils/clip_grad.py: total = ||(||g_1||, ..., ||g_K||)||, coef clamped at 1
        norm = xp.linalg.vector_norm(xp.stack([xp.linalg.vector_norm(g) for g in leaves]))
        coef = xp.clip(m / (norm + 1e-6), max=1.0)
        out = [g * xp.astype(coef, g.dtype) for g in leaves]
        return _tree.unflatten(structure, out), norm
    # optax: g_norm = sqrt(Σ_leaves Σ g²); select(g_norm < max_norm, g, (g / g_norm) * max_norm)
    total = None
    for g in leaves:
        s = xp.sum(g * g)
        total = s if total is None else total + s
    norm = xp.sqrt(total)
    keep = norm < m
    # the discarded branch never divides by zero (norm = 0 is always kept since max_norm > 0)
    den = xp.where(keep, xp.ones_like(norm), norm)
    out = [xp.where(keep, g, (g / xp.astype(den, g.dtype)) * m) for g in leaves]
    return _tree.unflatten(structure, out), norm


# ---------------------------------------------------------------------------------------
# Pan & Li's coordinate-wise clipping
# ---------------------------------------------------------------------------------------


def config_shape(shape: tuple, batch_axes: int, what: str) -> tuple:
    """The per-configuration shape of a hyper-parameter of ``shape``: trailing 1s dropped.

    Raises ValueError when the value varies along more than the ``batch_axes`` leading
    axes (a fraction per coordinate is not a thing: the threshold is per configuration).
    """
    out = tuple(shape)
    while len(out) > batch_axes and out[-1] == 1:
        out = out[:-1]
    if len(out) > batch_axes:
        hint = (
            "; set batch_axes to the number of leading axes that index configurations"
            if batch_axes == 0
            else ""
        )
        raise ValueError(
            f"{what} has shape {tuple(shape)}, but a value per configuration may vary only along the "
            f"{batch_axes} leading batch axes (batch_axes={batch_axes}; trailing axes of size 1 are "
            f"allowed){hint}"
        )
    return out


def _per_config(value: Any, batch_axes: int, what: str) -> Any:
    """A validated hyper-parameter as a Python float or a host array of its per-config shape."""
    if _array.is_scalar(value):
        return value
    shape = config_shape(value.shape, batch_axes, what)
    value = value.reshape(shape)
    return float(value) if shape == () else value


def _batch_shape(arrays: list, batch_axes: int, what: str) -> tuple:
    first = tuple(arrays[0].shape)
    for i, a in enumerate(arrays):
        shape = tuple(a.shape)
        if len(shape) < batch_axes or shape[:batch_axes] != first[:batch_axes]:
            raise ValueError(
                f"{what}: batch_axes={batch_axes} needs every array to share its {batch_axes} leading "
                f"axes (the configurations); array {i} has shape {shape}, array 0 has shape {first}"
            )
    return first[:batch_axes]


def _host_full(xp: Any, batch: tuple, value: float, dev: Any) -> Any:
    if batch == ():
        return value
    return _array.host_float64(xp.zeros(batch, device=dev), "tau") + value


def _truncate(x: Any) -> Any:
    """Python's ``int(x)`` for x >= 0, elementwise for host arrays."""
    if isinstance(x, float):
        return int(x)
    return (x // 1).astype("int64")


def top_fraction_threshold(
    arrays: list,
    fraction: Any,
    *,
    threshold_scale: Any = 1.0,
    batch_axes: int = 0,
    zero_threshold: str = "zero_all",
    what: str = "grads",
) -> Any:
    """The threshold τ = s · (the (⌊N c⌋+1)-th largest |g_i|) pooled over a list of arrays.

    Returns a Python float, or a float64 NumPy array of the batch shape
    (``arrays[i].shape[:batch_axes]``) when ``batch_axes > 0``; ``inf`` where c = 0 (nothing
    is clipped) and 0 where k reaches the number of ranked entries (c = 1).  Rules call
    this from ``_prepare`` with the flat lists of gradients they receive.
    """
    name = "clip_top_fraction"
    c = _FRACTION.validate(fraction, name)
    s = _SCALE.validate(threshold_scale, name)
    batch_axes = _BATCH_AXES.validate(batch_axes, name)
    zero_threshold = _ZERO.validate(zero_threshold, name)
    if not arrays:
        raise ValueError(f"{what} holds no arrays")
    xp = _array.namespace(*arrays, what=what)
    batch = _batch_shape(arrays, batch_axes, what)
    c = _per_config(c, batch_axes, "fraction")
    s = _per_config(s, batch_axes, "threshold_scale")
    for value, label in ((c, "fraction"), (s, "threshold_scale")):
        if not _array.is_scalar(value) and _array.broadcast_shapes(value.shape, batch) != batch:
            raise ValueError(
                f"{name}: {label} has per-configuration shape {value.shape}, which does not broadcast "
                f"against the batch shape {batch} of the arrays"
            )
    dev = _array.device(arrays[0])
    if _array.is_scalar(c) and c == 0:  # the code returns the gradient unchanged: no threshold
        return _host_full(xp, batch, math.inf, dev)

    # a: the magnitudes of every configuration pooled over the arrays, sorted descending
    mags = [xp.reshape(xp.abs(g), (*batch, -1)) for g in arrays]
    a = mags[0] if len(mags) == 1 else xp.concat(mags, axis=-1)
    a = xp.sort(a, axis=-1, descending=True)
    N = int(a.shape[-1])
    if zero_threshold == "nonzero":  # zeros sort last: rank only the first n entries
        count = _array.host_float64(xp.sum(xp.astype(a > 0, xp.int64), axis=-1), "count")
        n = int(count) if batch == () else count
    else:
        n = N
    k = _truncate(n * c)  # int(N * c): Python's truncation of the float64 product, e.g. int(100*0.29) == 28
    inside = k < n
    k_safe = _array.host_where(inside, k, 0)

    if N == 0:
        raw = _host_full(xp, batch, 0.0, dev)
    elif isinstance(k_safe, int):
        raw = _array.host_float64(a[..., k_safe], "tau")  # the code's float(a[k])
    else:
        idx = xp.asarray(k_safe, dtype=xp.int64, device=dev)
        idx = xp.broadcast_to(idx, batch)
        raw = _array.host_float64(xp.take_along_axis(a, idx[..., None], axis=-1)[..., 0], "tau")
    raw = _array.host_where(inside, raw, 0.0)  # k = n (c = 1): τ = 0, every entry becomes 0
    tau = raw if _array.is_scalar(s) and s == 1.0 else s * raw  # host float64, as the code's float * float
    tau = _array.host_where(c == 0, math.inf, tau)
    if batch == ():
        return float(tau)
    if _array.is_scalar(tau) or tuple(tau.shape) != batch:  # one value for every configuration
        tau = _host_full(xp, batch, 0.0, dev) + tau
    return tau


def threshold_like(tau: Any, like: Any, batch_axes: int = 0) -> Any:
    """τ from :func:`top_fraction_threshold` made ready to clamp the array ``like``.

    A Python float stays a weak scalar (rounded to ``like``'s dtype at use); a host array of
    the batch shape gains trailing axes of size 1 and is rounded once to ``like``'s dtype.
    """
    if _array.is_scalar(tau):
        return tau
    return _array.lift(tau.reshape(tuple(tau.shape) + (1,) * (like.ndim - batch_axes)), like)


def clamp(xp: Any, g: Any, tau: Any) -> Any:
    """``clamp(g, -τ, τ)``: g where |g| < τ, else sign(g) τ (τ from :func:`threshold_like`)."""
    return xp.clip(g, min=-tau, max=tau)


def clip_top_fraction(
    tree: Any,
    fraction: Any,
    *,
    threshold_scale: Any = 1.0,
    batch_axes: int = 0,
    zero_threshold: str = "zero_all",
) -> tuple[Any, Any]:
    """``(clipped tree, τ)``: Pan & Li's coordinate-wise clipping of the top ``fraction``.

    τ is the (⌊N·c⌋+1)-th largest magnitude pooled over every array of the tree (per
    configuration when ``batch_axes > 0``), times ``threshold_scale``; every entry is
    clamped to [-τ, τ].  ``fraction == 0`` returns the tree itself and τ = inf;
    ``fraction == 1`` zeroes the tree.  See the module docstring for ``zero_threshold``.
    """
    xp, leaves, structure = _float_leaves(tree, "tree")
    fraction = _FRACTION.validate(fraction, "clip_top_fraction")
    tau = top_fraction_threshold(
        leaves,
        fraction,
        threshold_scale=threshold_scale,
        batch_axes=batch_axes,
        zero_threshold=zero_threshold,
        what="tree",
    )
    if _array.is_scalar(fraction) and fraction == 0:
        return tree, tau
    out = [clamp(xp, g, threshold_like(tau, g, batch_axes)) for g in leaves]
    return _tree.unflatten(structure, out), tau
