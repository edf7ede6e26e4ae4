"""Plotting helpers for the CLI (matplotlib is the optional extra ``refopt[plot]``)."""

from __future__ import annotations

import numpy as np


def pyplot():
    """matplotlib.pyplot with a file-only backend, or an ImportError that says how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'refopt[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def contour(ax, function, paths: dict[str, np.ndarray], *, title: str, levels: int = 30) -> None:
    """Contours of a 2-D function over its domain with one trajectory per label."""
    (x_lo, x_hi), (y_lo, y_hi) = function.domain
    # widen the window to keep the trajectories in view, but at most to 1.5x the domain: a run
    # that leaves it is cut by the axes (and the legend says so) instead of squashing the plot
    cx, cy, hx, hy = (x_lo + x_hi) / 2, (y_lo + y_hi) / 2, 0.75 * (x_hi - x_lo), 0.75 * (y_hi - y_lo)
    escaped = set()
    for label, path in paths.items():
        finite = path[np.all(np.isfinite(path), axis=-1)]
        if len(finite):
            x_lo, x_hi = max(min(x_lo, finite[:, 0].min()), cx - hx), min(max(x_hi, finite[:, 0].max()), cx + hx)
            y_lo, y_hi = max(min(y_lo, finite[:, 1].min()), cy - hy), min(max(y_hi, finite[:, 1].max()), cy + hy)
            if np.any(np.abs(finite[:, 0] - cx) > hx) or np.any(np.abs(finite[:, 1] - cy) > hy):
                escaped.add(label)
    gx, gy = np.meshgrid(np.linspace(x_lo, x_hi, 200), np.linspace(y_lo, y_hi, 200))
    z = function.value(np.stack([gx, gy], axis=-1))
    finite = z[np.isfinite(z)]
    shift = max(0.0, -finite.min()) if finite.size else 0.0
    ax.contour(gx, gy, np.log1p(z + shift), levels=levels, cmap="viridis", linewidths=0.6)
    for label, path in paths.items():
        ax.plot(path[:, 0], path[:, 1], lw=1.4, label=label + (" (leaves the window)" if label in escaped else ""))
        ax.plot(path[-1, 0], path[-1, 1], "o", ms=4, color=ax.lines[-1].get_color())
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    for m in function.minimizers:
        ax.plot(m[0], m[1], "x", color="tab:orange", ms=10, mew=2.5)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(fontsize=7, loc="best")
