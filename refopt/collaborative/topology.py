"""Communication graphs for decentralized learning, their Metropolis–Hastings weights and spectral gap.

Host-side module: a topology is a small ``(n, n)`` boolean adjacency matrix that lives on the
host as a read-only NumPy array (graphs have at most a few hundred nodes; the simulator moves
the mixing weights to the device once).  This module therefore imports NumPy directly, like the
random draws of :func:`erdos_renyi` need it to.

Graph conventions:

* undirected, no self-loops in ``adjacency``; a node always "hears" itself, so the mixing
  matrix has a positive diagonal;
* Metropolis–Hastings weights (epfml ``graph_utils.metropolis_weight``)::

      W_ij = 1 / (1 + max(deg_i, deg_j))      for every edge (i, j)
      W_ii = 1 - Σ_{j≠i} W_ij

  W is symmetric and doubly stochastic (W1 = 1 and 1ᵀW = 1ᵀ) for every undirected graph;
* spectral gap ρ = 1 − |λ₂(W)|, with |λ₂| the second largest eigenvalue *in absolute value*
  (epfml ``spectral_gap``).  ρ = 1 for the complete graph (W = 11ᵀ/n averages exactly) and
  ρ = 0 exactly when the graph is disconnected (eigenvalue 1 is then repeated).

Closed forms the tests check (L the graph Laplacian, every regular graph of degree k has
W = I − L/(k+1)):

* complete(n):        ρ = 1
* ring(n), n ≥ 4:     eigenvalues 1/3 + (2/3)cos(2πj/n), so ρ = (2/3)(1 − cos(2π/n))
* star(n), n ≥ 3:     W = I − L/n, Laplacian eigenvalues {0, 1, n}, so ρ = 1/n
* torus(r, c), r, c ≥ 3: eigenvalues 1/5 + (2/5)(cos(2πa/r) + cos(2πb/c))
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Topology",
    "complete",
    "ring",
    "torus",
    "star",
    "erdos_renyi",
    "two_cliques",
    "from_adjacency",
    "TOPOLOGIES",
    "get",
]


def _int(value, name: str, low: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what}: {name} must be an integer >= {low}; got {value!r}")
    if value < low:
        raise ValueError(f"{what}: {name} must be an integer >= {low}; got {value!r}")
    return int(value)


@dataclass(frozen=True, eq=False)
class Topology:
    """An undirected communication graph on ``n`` nodes.

    ``adjacency`` is a read-only ``(n, n)`` boolean NumPy array, symmetric with a false
    diagonal; ``name`` says how it was built (``"ring(8)"``).  Build one with the functions of
    this module or :func:`from_adjacency`.
    """

    adjacency: np.ndarray
    name: str = "graph"
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n(self) -> int:
        return int(self.adjacency.shape[0])

    @property
    def degrees(self) -> np.ndarray:
        return self.adjacency.sum(axis=1).astype(np.int64)

    @property
    def is_complete(self) -> bool:
        return bool(self.adjacency.sum() == self.n * (self.n - 1))

    def edges(self) -> list[tuple[int, int]]:
        """The edges (i, j) with i < j, in lexicographic order."""
        i, j = np.nonzero(np.triu(self.adjacency, 1))
        return [(int(a), int(b)) for a, b in zip(i, j)]

    def is_connected(self) -> bool:
        """True when every node reaches every other one (breadth-first search from node 0)."""
        if "connected" not in self._cache:
            seen = np.zeros(self.n, dtype=bool)
            seen[0] = True
            frontier = seen.copy()
            while frontier.any():
                nxt = self.adjacency[frontier].any(axis=0) & ~seen
                seen |= nxt
                frontier = nxt
            self._cache["connected"] = bool(seen.all())
        return self._cache["connected"]

    def metropolis_hastings_weights(self) -> np.ndarray:
        """The symmetric, doubly stochastic mixing matrix W (float64, read-only); see the module doc."""
        if "mh" not in self._cache:
            deg = self.degrees.astype(np.float64)
            w = np.where(self.adjacency, 1.0 / (1.0 + np.maximum(deg[:, None], deg[None, :])), 0.0)
            w[np.diag_indices(self.n)] = 1.0 - w.sum(axis=1)
            w.flags.writeable = False
            self._cache["mh"] = w
        return self._cache["mh"]

    def spectral_gap(self, weights: np.ndarray | None = None) -> float:
        """ρ = 1 − |λ₂(W)| for W = the Metropolis–Hastings weights (or the symmetric ``weights`` given)."""
        w = self.metropolis_hastings_weights() if weights is None else np.asarray(weights, dtype=np.float64)
        if self.n == 1:
            return 1.0
        lam = np.sort(np.abs(np.linalg.eigvalsh(w)))[::-1]
        return float(max(0.0, 1.0 - lam[1]))

    def laplacian(self) -> np.ndarray:
        a = self.adjacency.astype(np.float64)
        return np.diag(a.sum(axis=1)) - a

    def __repr__(self) -> str:
        return f"Topology({self.name}, n={self.n}, edges={int(self.adjacency.sum()) // 2})"


def from_adjacency(adjacency, name: str = "graph") -> Topology:
    """A :class:`Topology` from a square, symmetric 0/1 (or boolean) matrix with a zero diagonal."""
    a = np.asarray(adjacency)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 1:
        raise ValueError(f"from_adjacency: adjacency must be a non-empty square (n, n) matrix; got shape {a.shape}")
    if a.dtype != np.bool_:
        if not np.all((a == 0) | (a == 1)):
            raise ValueError("from_adjacency: adjacency must hold only 0/1 (or booleans)")
        a = a != 0
    if np.any(np.diag(a)):
        i = int(np.nonzero(np.diag(a))[0][0])
        raise ValueError(f"from_adjacency: adjacency must have a zero diagonal (no self-loops); node {i} has one")
    if not np.array_equal(a, a.T):
        i, j = (int(v) for v in np.argwhere(a != a.T)[0])
        raise ValueError(f"from_adjacency: adjacency must be symmetric (undirected graph); ({i}, {j}) differs from ({j}, {i})")
    a = np.array(a, dtype=bool, copy=True)
    a.flags.writeable = False
    return Topology(a, name)


def complete(n: int) -> Topology:
    """Every pair of nodes connected (MoNNA's all-to-all setting); W = 11ᵀ/n."""
    n = _int(n, "n", 1, "complete")
    return from_adjacency(~np.eye(n, dtype=bool), f"complete({n})")


def ring(n: int) -> Topology:
    """Node i connected to i ± 1 (mod n); n ≥ 3 (ring(3) is complete(3))."""
    n = _int(n, "n", 3, "ring")
    i = np.arange(n)
    a = np.zeros((n, n), dtype=bool)
    a[i, (i + 1) % n] = True
    a[(i + 1) % n, i] = True
    return from_adjacency(a, f"ring({n})")


def torus(r: int, c: int) -> Topology:
    """An r × c grid with wrap-around (node index = row·c + column); r, c ≥ 3 so that degrees are 4."""
    r = _int(r, "r", 3, "torus")
    c = _int(c, "c", 3, "torus")
    idx = np.arange(r * c).reshape(r, c)
    a = np.zeros((r * c, r * c), dtype=bool)
    for shifted in (np.roll(idx, 1, axis=0), np.roll(idx, 1, axis=1)):
        a[idx.ravel(), shifted.ravel()] = True
        a[shifted.ravel(), idx.ravel()] = True
    return from_adjacency(a, f"torus({r}, {c})")


def star(n: int) -> Topology:
    """Node 0 (the hub) connected to every other node, no other edge; n ≥ 2."""
    n = _int(n, "n", 2, "star")
    a = np.zeros((n, n), dtype=bool)
    a[0, 1:] = True
    a[1:, 0] = True
    return from_adjacency(a, f"star({n})")


def erdos_renyi(n: int, p: float, seed: int) -> Topology:
    """G(n, p): each of the n(n−1)/2 edges present independently with probability p.

    Drawn from ``numpy.random.default_rng(seed)`` (uniforms on the upper triangle, row by row).
    The graph may be disconnected; check :meth:`Topology.is_connected` (the simulator refuses a
    disconnected graph).
    """
    n = _int(n, "n", 1, "erdos_renyi")
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not (0.0 <= float(p) <= 1.0) or math.isnan(p):
        raise ValueError(f"erdos_renyi: p must be a probability in [0, 1]; got {p!r}")
    seed = _int(seed, "seed", 0, "erdos_renyi")
    u = np.random.default_rng(seed).random((n, n))
    a = np.triu(u < float(p), 1)
    return from_adjacency(a | a.T, f"erdos_renyi({n}, {float(p)!r}, seed={seed})")


def two_cliques(n: int) -> Topology:
    """Two complete graphs on nodes 0..a−1 and a..n−1 (a = n // 2) joined by the one edge (a−1, a); n ≥ 4.

    A well-connected-inside, badly-connected-across graph: its spectral gap is small.
    """
    n = _int(n, "n", 4, "two_cliques")
    h = n // 2
    a = np.zeros((n, n), dtype=bool)
    a[:h, :h] = True
    a[h:, h:] = True
    a[np.diag_indices(n)] = False
    a[h - 1, h] = a[h, h - 1] = True
    return from_adjacency(a, f"two_cliques({n})")


TOPOLOGIES = {
    "complete": complete,
    "ring": ring,
    "torus": torus,
    "star": star,
    "erdos_renyi": erdos_renyi,
    "two_cliques": two_cliques,
}


def get(name: str, *args, **kwargs) -> Topology:
    """A topology by name: ``get("ring", 8)``."""
    if name not in TOPOLOGIES:
        from ..rules._base import suggest

        raise ValueError(suggest(name, list(TOPOLOGIES), "topology"))
    return TOPOLOGIES[name](*args, **kwargs)
