"""Workloads: each generates its requests (or transactions) from a seed, apart
from their execution, so every system sees exactly the same inputs. A
workload module has the same shape as the others: SCHEMA (its tables),
STAMP_TXN (whether every request is a transaction of its own, stamped by the
client loop), initial(spec) (the data every server loads, from the spec's
keys, scale and seed) and stream(spec)
(a client's requests, from its spec). transactional(spec) says whether a
run drives flat requests through the native loop (stream) or transactions
through the executor (harness/txn.py); a transactional workload also has
transactions(spec) -> (type names, generator functions, [(type, args)]) and
MAX_ROUNDS (round trips in its longest transaction)."""
from __future__ import annotations

import importlib
from array import array
from types import ModuleType

NAMES = ("echo", "kv", "log", "lock", "smallbank", "tatp", "tpcc")
# replicated transactions through the coordinator (harness/coord.py), each a
# package of the same shape (see workloads/smallbank/__init__.py)
TRANSACTIONAL = ("lock", "smallbank", "tatp", "tpcc")
SCALED = ("smallbank", "tatp", "tpcc")


def transactional(mod: ModuleType, spec: dict) -> bool:
    """Whether a run of mod drives transactions through the executor: its
    transactional(spec) if it has one, else whether it has transactions()."""
    if hasattr(mod, "transactional"):
        return mod.transactional(spec)
    return hasattr(mod, "transactions")


def load(name: str) -> ModuleType:
    if name not in NAMES:
        raise ValueError(f"unknown workload {name!r} (known: {', '.join(NAMES)})")
    return importlib.import_module(f"workloads.{name}")
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestStream:
    """Requests packed for the client's native loop: request i is
    data[offsets[i]:offsets[i+1]], sent to server dest_of[i]."""
    data: bytes
    offsets: array  # 'I', len(requests) + 1 entries
    dest_of: bytes

    @classmethod
    def pack(cls, requests: list[tuple[int, bytes]]) -> "RequestStream":
        offsets = array("I", [0])
        for _, msg in requests:
            offsets.append(offsets[-1] + len(msg))
        return cls(b"".join(m for _, m in requests), offsets, bytes(d for d, _ in requests))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def request(self, i: int) -> tuple[int, bytes]:
        return self.dest_of[i], self.data[self.offsets[i]:self.offsets[i + 1]]
