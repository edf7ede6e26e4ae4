"""Decentralized (collaborative) learning with Byzantine nodes: topologies, D-SGD, MoNNA, baselines.

* :mod:`~refopt.collaborative.topology` -- communication graphs (complete, ring, torus, star,
  Erdős–Rényi, two cliques), Metropolis–Hastings mixing weights, spectral gap, connectivity.
* :mod:`~refopt.collaborative.mixing` -- the batched mixing rules (gossip, NNA, trimmed mean,
  geometric median, self-centered clipping) applied by every honest node at once.
* :func:`simulate` -- D-SGD, MoNNA (both receive-set conventions) and the MoNNA paper's baselines
  (NNA, MoCWTM, BRIDGE, MoGM, GM, SCC) under attack, all nodes in one ``(nodes, d)`` array.

Reference: MoNNA (Farhadkhani et al., ICML 2023, arXiv:2209.10931) and its code
LPD-EPFL/robust-collaborative-learning.
"""

from . import mixing, topology
from .simulate import ALGORITHMS, CONVENTIONS, DEFAULT_MOMENTUM, SimulationResult, monna_lr, simulate
from .topology import Topology, complete, erdos_renyi, from_adjacency, ring, star, torus, two_cliques

__all__ = [
    "ALGORITHMS",
    "CONVENTIONS",
    "DEFAULT_MOMENTUM",
    "SimulationResult",
    "Topology",
    "complete",
    "erdos_renyi",
    "from_adjacency",
    "mixing",
    "monna_lr",
    "ring",
    "simulate",
    "star",
    "topology",
    "torus",
    "two_cliques",
]
