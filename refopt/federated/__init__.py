"""Federated optimization on a simulated clock: FedAvg, FedAsync, FedBuff, FedFix.

Reference: Fraboni et al., JMLR 2023, arXiv:2206.10189, and the authors' code Accenture/Labs-Federated-Learning, branch asynchronous_FL. Modules:
:mod:`.clock` (exact schedules), :mod:`.theory` (closed forms), :mod:`.rules` (server rules),
:mod:`.simulate` (the simulator).
"""

from .clock import SCHEMES, ServerEvent, client_times, measured_mean_delays, measured_participation, schedule
from . import theory
from . import rules
from .simulate import FedResult, simulate

__all__ = [
    "SCHEMES", "ServerEvent", "client_times", "measured_mean_delays", "measured_participation", "schedule",
    "theory", "rules", "FedResult", "simulate",
]
