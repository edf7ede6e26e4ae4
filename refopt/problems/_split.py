r"""Heterogeneous (non-i.i.d.) splits of a labelled dataset over nodes (Host-side: imports NumPy).

``dirichlet_split(y, nodes, alpha, seed, method=...)`` returns one int64 NumPy index array per
node. Three published procedures are named options; they are *different models* that share
the name "Dirichlet split" (each read from the code named with it):

``method="monna"`` (default) -- MoNNA's reproduce scripts (LPD-EPFL/robust-collaborative-learning,
``experiments/dataset.py``). Per node, independently: class proportions p ~ Dir(α·1_K) over the
K classes; with m = ⌊N / nodes⌋, the node takes c_k = ⌊m · p_k⌋ examples of class k, drawn
uniformly *without replacement within the node* (capped at the class size) but independently
of the other nodes -- nodes may share examples, some examples belong to no node, and a node
holds Σ_k c_k <= m examples (at least m - K + 1 because of the floors; so a node can be
left with no example only when m < K). A row of p that is
not finite (the code's "numerical crash" guard) gives the whole m to one uniformly drawn
class. ``nodes`` is the number of *honest* nodes (Byzantine nodes hold no data).
Order inside a node: class by class (0, 1, ...), random order within a class.

``method="byzfl"`` -- ByzFL's ``dirichlet_niid`` (LPD-EPFL/byzfl, ``DataDistributor``): a
*disjoint partition* of all N examples. Per class k, proportions over the nodes
q ~ Dir(α·1_nodes); the class's examples are cut at ⌊cumsum(q)_j · N_k⌋ and piece j goes to
node j. Every example lands in exactly one node; a node may receive none at all. refopt
shuffles each class's indices before cutting (ByzFL cuts them in the order of its index list).

``method="fraboni"`` -- Fraboni et al.'s federated code (Accenture/Labs-Federated-Learning,
``FL/read_db.py``): every node gets exactly m = ⌊N / nodes⌋ examples; per node p ~ Dir(α·1_K),
c_k = ⌊m · p_k⌋ for k < K-1 and the last class takes the remainder m - Σ_{k<K-1} c_k; the
examples of each class are drawn *with replacement*. α = 0 means node i holds only class
i mod K. (The authors apply the same proportions to their test set.)

α = ∞ is accepted by every method: the proportions are exactly uniform (1/K over classes, or
1/nodes over nodes for ``byzfl``). Small α concentrates each node on few classes; large α
makes every node's class mix approach the global one.

Randomness: ``numpy.random.default_rng(seed)`` (or a Generator passed as ``seed``). The
authors' code draws from NumPy's and Python's global generators, so the same seed does not
give their exact split -- only the same distribution.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .. import _array
from ._base import check_choice, check_int

__all__ = ["dirichlet_split", "SPLIT_METHODS", "class_proportions"]

SPLIT_METHODS = ("monna", "byzfl", "fraboni")


def _labels(y: Any) -> np.ndarray:
    arr = y if isinstance(y, np.ndarray) else (_array.to_numpy(y) if _array.is_array(y) else np.asarray(y))
    if arr.ndim != 1:
        raise ValueError(f"dirichlet_split: y must be a 1-D array of class labels; got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("dirichlet_split: y is empty")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"dirichlet_split: y must hold integer class labels; got dtype {arr.dtype}")
    if arr.min() < 0:
        raise ValueError(f"dirichlet_split: class labels must be >= 0; got {int(arr.min())}")
    return arr.astype(np.int64)


def _rng(seed: Any) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(check_int("dirichlet_split", "seed", seed, 0))


def _dirichlet(rng: np.random.Generator, alpha: float, k: int, size: int) -> np.ndarray:
    if math.isinf(alpha):
        return np.full((size, k), 1.0 / k)
    return rng.dirichlet(np.full(k, alpha), size=size)


def dirichlet_split(y: Any, nodes: int, alpha: float, seed: Any = 0, *, method: str = "monna",
                    classes: int | None = None) -> list[np.ndarray]:
    """One int64 index array per node: a Dirichlet(α) heterogeneous split of the labels ``y``.

    ``y``: 1-D integer labels (NumPy or any array library); ``nodes``: how many nodes get data;
    ``alpha`` > 0 (or ``math.inf``; 0 only with ``method="fraboni"``); ``seed``: an int or a
    ``numpy.random.Generator``; ``classes``: K (default ``max(y) + 1``). See the module
    docstring for the three methods and how they differ.
    """
    fn = "dirichlet_split"
    method = check_choice(fn, "method", method, SPLIT_METHODS)
    labels = _labels(y)
    nodes = check_int(fn, "nodes", nodes, 1)
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or math.isnan(float(alpha)):
        raise TypeError(f"{fn}: alpha must be a real number > 0 (or math.inf); got {alpha!r}")
    alpha = float(alpha)
    if alpha < 0 or (alpha == 0 and method != "fraboni"):
        allowed = ">= 0" if method == "fraboni" else "> 0 (0 is only defined for method='fraboni')"
        raise ValueError(f"{fn}: alpha must be {allowed} or math.inf; got {alpha!r}")
    K = int(labels.max()) + 1
    if classes is not None:
        classes = check_int(fn, "classes", classes, 1)
        if classes < K:
            raise ValueError(f"{fn}: classes = {classes} but y holds the label {K - 1}")
        K = classes
    N = labels.size
    if method != "byzfl" and N // nodes == 0:
        raise ValueError(f"{fn}: {N} examples cannot give {nodes} nodes at least one each (N // nodes = 0)")
    rng = _rng(seed)
    buckets = [np.flatnonzero(labels == k) for k in range(K)]
    if method == "monna":
        return _monna(rng, buckets, N // nodes, nodes, alpha)
    if method == "byzfl":
        return _byzfl(rng, buckets, nodes, alpha)
    return _fraboni(rng, buckets, N // nodes, nodes, alpha)


def _monna(rng, buckets, m, nodes, alpha):
    K = len(buckets)
    P = _dirichlet(rng, alpha, K, nodes)
    counts = np.zeros((nodes, K), dtype=np.int64)
    for i in range(nodes):
        row = P[i] * m
        if not np.isfinite(row).all():
            counts[i, int(rng.integers(K))] = m
        else:
            counts[i] = np.floor(row).astype(np.int64)
    out = []
    for i in range(nodes):
        parts = [rng.choice(b, size=min(int(c), b.size), replace=False) for c, b in zip(counts[i], buckets)]
        out.append(np.concatenate(parts).astype(np.int64))
    return out


def _byzfl(rng, buckets, nodes, alpha):
    K = len(buckets)
    Q = _dirichlet(rng, alpha, nodes, K)               # (K, nodes): row k = class k over nodes
    pieces = [[] for _ in range(nodes)]
    for k, b in enumerate(buckets):
        b = rng.permutation(b)
        cuts = np.floor(np.cumsum(Q[k])[:-1] * b.size).astype(np.int64)
        for j, part in enumerate(np.split(b, cuts)):
            pieces[j].append(part)
    return [np.concatenate(p).astype(np.int64) for p in pieces]


def _fraboni(rng, buckets, m, nodes, alpha):
    K = len(buckets)
    if alpha == 0:
        P = np.eye(K)[np.arange(nodes) % K]
    else:
        P = _dirichlet(rng, alpha, K, nodes)
    out = []
    for i in range(nodes):
        c = np.floor(P[i] * m).astype(np.int64)
        c[-1] = m - c[:-1].sum()
        parts = []
        for k, (ck, b) in enumerate(zip(c, buckets)):
            if ck > 0 and b.size == 0:
                raise ValueError(
                    f"dirichlet_split: node {i} needs {int(ck)} examples of class {k}, which has none in y"
                )
            parts.append(rng.choice(b, size=int(ck), replace=True) if ck > 0 else b[:0])
        out.append(np.concatenate(parts).astype(np.int64))
    return out


def class_proportions(y: Any, splits: list, classes: int | None = None) -> np.ndarray:
    """``(nodes, K)`` float64: the fraction of each class in each node's examples (0 rows for empty nodes)."""
    labels = _labels(y)
    K = int(labels.max()) + 1 if classes is None else check_int("class_proportions", "classes", classes, 1)
    out = np.zeros((len(splits), K))
    for i, idx in enumerate(splits):
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size:
            out[i] = np.bincount(labels[idx], minlength=K)[:K] / idx.size
    return out
