"""Where a key lives: the one statement of the placement rule, used by the
workloads (which server a request goes to), the coordinator (primary and
backups) and the consistency check (which copies must agree). The client's
native loops know no rule: every request reaches them with its server.

With S servers, a key's primary is key mod S (as DINT places keys) and its
backups are the next min(3, S) - 1 servers, mod S; every server holds a
copy of each key it is a replica of (with 3 servers, every key)."""
from __future__ import annotations

REPLICAS = 3


class Placement:
    """Which servers hold a key: its primary first, then its backups."""
    __slots__ = ("servers", "replicas", "holders_of", "primary")

    def __init__(self, servers: int, replicas: int = REPLICAS):
        if servers < 1:
            raise ValueError("at least one server")
        self.servers = servers
        self.replicas = min(replicas, servers)
        # by primary: the holders, primary first (computed once; the
        # coordinator indexes it on its hot path)
        self.holders_of = tuple(tuple((p + i) % servers for i in range(self.replicas)) for p in range(servers))
        # primary(key) = key mod servers, as a builtin: the coordinator calls
        # it for every request it builds, and a Python function per call
        # would cost a frame each time
        self.primary = servers.__rmod__

    def backups(self, key: int) -> tuple[int, ...]:
        return self.holders_of[self.primary(key)][1:]

    def holders(self, key: int) -> tuple[int, ...]:
        return self.holders_of[self.primary(key)]
