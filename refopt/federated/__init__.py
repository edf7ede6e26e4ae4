"""Federated optimization on a simulated clock: FedAvg, FedAsync, FedBuff, FedFix.

Reference: ``shared/reference/federated.md`` (Fraboni et al., JMLR 2023). Modules:
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
