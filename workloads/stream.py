"""Requests packed for the client's native request loop (harness/native/loop.c)."""
from __future__ import annotations

from array import array
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestStream:
    """Request i is data[offsets[i]:offsets[i+1]], sent to server dest_of[i]."""
    data: bytes
    offsets: array  # 'I', len(requests) + 1 entries
    dest_of: bytes

    @classmethod
    def pack(cls, requests: list[tuple[int, bytes]]) -> "RequestStream":
        """From [(server, datagram)]."""
        offsets = array("I", [0])
        for _, msg in requests:
            offsets.append(offsets[-1] + len(msg))
        return cls(b"".join(m for _, m in requests), offsets, bytes(d for d, _ in requests))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def request(self, i: int) -> tuple[int, bytes]:
        return self.dest_of[i], self.data[self.offsets[i]:self.offsets[i + 1]]
