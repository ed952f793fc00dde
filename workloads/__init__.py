"""Workloads: each generates its requests (or transactions) from a seed,
apart from their execution, so every system sees exactly the same inputs.
What a workload provides is one `Workload` (workloads/contract.py, the whole
contract); this is the one list of them."""
from __future__ import annotations

import importlib

from .contract import (CC_MODES, LOCK_PROTOCOLS, CheckSpec, DataSpec, LoadSpec, Scaling, Size, Stream,  # noqa: F401
                       Transactions, TxnType, Workload)
from .stream import RequestStream  # noqa: F401

# Every workload, by name: the module workloads.<name> defines WORKLOAD.
NAMES = ("echo", "kv", "log", "lock", "smallbank", "tatp", "tpcc")


def get(name: str) -> Workload:
    """The workload called name (imported on first use)."""
    if name not in NAMES:
        raise ValueError(f"unknown workload {name!r} (known: {', '.join(NAMES)})")
    return importlib.import_module(f"workloads.{name}").WORKLOAD


def with_feature(pred) -> tuple[str, ...]:
    """The names of the workloads for which pred(workload) holds."""
    return tuple(n for n in NAMES if pred(get(n)))
