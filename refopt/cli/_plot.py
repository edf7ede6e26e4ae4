"""Plotting helpers for the CLI (matplotlib is the optional extra ``refopt[plot]``)."""

from __future__ import annotations

import os

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


def check_output(path: str, option: str) -> None:
    """Before any work: ``path`` (an output file) can be written -- its directory exists and is
    writable, and it is not itself a directory (ValueError naming the option otherwise)."""
    full = os.path.abspath(os.path.expanduser(path))
    folder = os.path.dirname(full)
    if os.path.isdir(full):
        raise ValueError(f"{option} {path!r} is a directory; give a file name")
    if not os.path.isdir(folder):
        raise ValueError(f"{option} {path!r}: the directory {folder!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (os.path.exists(full) and not os.access(full, os.W_OK)):
        raise ValueError(f"{option} {path!r} is not writable")


def check_plot(path: str) -> None:
    """Before any work: the plot can be written (:func:`check_output`) and matplotlib imports
    (ImportError with the install hint otherwise)."""
    check_output(path, "--plot")
    pyplot()


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
    ax.contour(gx, gy, np.log1p(z + shift), levels=levels, cmap="Greys", linewidths=0.5, alpha=0.7)
    # paths that overlap stay visible: each its own colour and dash, the first widest and beneath the rest
    styles = [("tab:blue", "-", 2.6), ("tab:red", "--", 1.8), ("tab:green", ":", 1.8), ("tab:purple", "-.", 1.4)]
    for k, (label, path) in enumerate(paths.items()):
        color, dash, width = styles[k % len(styles)]
        ax.plot(path[:, 0], path[:, 1], ls=dash, lw=width, color=color, zorder=4 + k,
                label=label + (" (leaves the window)" if label in escaped else ""))
        ax.plot(path[-1, 0], path[-1, 1], "o", ms=5, color=color, zorder=10)
    first = next(iter(paths.values()))
    ax.plot(first[0, 0], first[0, 1], "s", ms=6, color="black", zorder=11, label="start")
    for i, m in enumerate(function.minimizers):
        ax.plot(m[0], m[1], "*", ms=14, color="gold", mec="black", mew=1.0, zorder=12,
                label="optimum" if i == 0 else None)
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(fontsize=7, loc="best")
