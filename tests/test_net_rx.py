"""The kernel's receive rules as the DPDK server applies them
(userspace/net_rx.h) and the checksum code both frontends share
(engine/dint_net.h), compiled with gcc and checked against tables: IP
options and addresses as Linux took them in the kernel server's namespace
(the conformance suite sends such frames to all three systems on the
testbed), checksums against Python's."""
from __future__ import annotations

import json
import random
import struct

from harness import ENGINE_DIR, USERSPACE_DIR

from conftest import run_c

PRELUDE = """
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include "store.h" /* the engine's storage hooks, which dint_net.h's engine wants */
#include "net_rx.h"
"""

# option bytes (a whole IPv4 options field) -> Linux takes the datagram
OPTIONS = {
    "": True,
    "01010100": True,                      # NOP NOP NOP END
    "01010101": True,                      # NOPs to the end
    "00ffffff": True,                      # END: the rest is not read
    "07070400000000": True,                # record route, room for one address
    "07030400": True,                      # record route, full
    "07030300": False,                     # record route, pointer below 4
    "0707040000000007070400000000": False,  # record route twice
    "440c0500" + "00" * 8: True,           # timestamp
    "440405e0": True,                      # timestamp full, overflow counter 14
    "440405f0": False,                     # ... counter 15: it would overflow
    "44080501" + "00" * 4: False,          # timestamp with address, no room for one
    "44040503": True,                      # prespecified timestamps, full
    "94040000": True,                      # router alert
    "94040001": True,                      # router alert of another value
    "94030000": False,                     # router alert too short
    "8307040000000000": False,             # loose source route: never taken
    "8907040000000000": False,             # strict source route
    "860600000001": False,                 # CIPSO, no domain configured
    "82040000": True,                      # security: carried, unread
    "1e040000": True,                      # an unknown option
    "1e000000": False,                     # a length of 0
    "1e090000": False,                     # a length past the header
    "1e": False,                           # a type without its length
}


def test_ip_options_as_linux_takes_them(tmp_path):
    rows = ",".join(f'"{k}"' for k in OPTIONS)
    src = PRELUDE + """
static const char *rows[] = {""" + rows + """};
int main(void) {
    printf("[");
    for (unsigned i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        unsigned char b[40]; unsigned n = strlen(rows[i]) / 2;
        for (unsigned j = 0; j < n; j++) sscanf(rows[i] + 2 * j, "%2hhx", &b[j]);
        printf("%s%d", i ? "," : "", net_rx_options_ok(b, n));
    }
    printf("]");
}
"""
    got = run_c(tmp_path, src, ENGINE_DIR, USERSPACE_DIR)
    assert dict(zip(OPTIONS, map(bool, got))) == OPTIONS


HOST = "10.0.0.1"  # the host's address, a /24: its directed broadcast 10.0.0.255
# (source, destination) -> Linux delivers it to a socket on every address
ROUTES = {
    ("10.0.0.2", HOST): True,
    ("10.9.9.9", HOST): True,             # no route back: taken all the same (rp_filter 0)
    ("10.0.0.2", "10.0.0.3"): False,      # another host's (no forwarding)
    (HOST, HOST): False,                  # from its own address (accept_local 0)
    ("127.0.0.1", HOST): False,           # martian sources
    ("0.0.0.0", HOST): False,
    ("224.0.0.5", HOST): False,
    ("255.255.255.255", HOST): False,
    ("10.0.0.2", "127.0.0.1"): False,     # martian destinations
    ("10.0.0.2", "0.0.0.1"): False,
    ("10.0.0.2", "255.255.255.255"): True,  # the limited broadcast
    ("0.0.0.0", "255.255.255.255"): True,
    (HOST, "255.255.255.255"): False,
    ("10.0.0.2", "10.0.0.255"): True,     # the directed broadcast of its prefix
    ("10.0.0.2", "224.0.0.1"): True,      # the all-hosts group
    ("0.0.0.0", "224.0.0.1"): True,
    ("127.0.0.1", "224.0.0.1"): False,
    ("10.0.0.2", "224.0.0.9"): False,     # a group it never joined
}


def test_addresses_as_linux_routes_them(tmp_path):
    pairs = ",".join(f'{{"{s}", "{d}"}}' for s, d in ROUTES)
    src = PRELUDE + """
#include <arpa/inet.h>
static const char *rows[][2] = {""" + pairs + """};
int main(void) {
    __u32 addrs[1], bcasts[1];
    inet_pton(AF_INET, "10.0.0.1", &addrs[0]);
    inet_pton(AF_INET, "10.0.0.255", &bcasts[0]);
    struct net_rx_host h = { addrs, 1, bcasts, 1 };
    printf("[");
    for (unsigned i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        __u32 s, d;
        inet_pton(AF_INET, rows[i][0], &s);
        inet_pton(AF_INET, rows[i][1], &d);
        printf("%s%d", i ? "," : "", net_rx_route(&h, s, d));
    }
    printf("]");
}
"""
    got = run_c(tmp_path, src, ENGINE_DIR, USERSPACE_DIR)
    assert dict(zip(ROUTES, map(bool, got))) == ROUTES


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def test_the_shared_checksum_sums_as_rfc_1071_does(tmp_path):
    rng = random.Random(7)
    blobs = [bytes(rng.randrange(256) for _ in range(n)) for n in [*range(0, 70), 255, 1024, 1072, 1500, 4097]]
    src = PRELUDE + """
int main(void) {
    static unsigned char buf[8192];
    unsigned n;
    printf("[");
    for (int first = 1; scanf("%u", &n) == 1; first = 0) {
        for (unsigned j = 0; j < n; j++) scanf("%2hhx", &buf[j]);
        /* in memory order: the folded sum, byte-swapped on little-endian */
        __u16 s = dint_csum_fold(net_rx_csum_add(0, buf, n));
        printf("%s%u", first ? "" : ",", (unsigned)dint_ntohs(s));
    }
    printf("]");
}
"""
    (tmp_path / "in.txt").write_text("\n".join(f"{len(b)} {b.hex()}" for b in blobs))
    import subprocess
    (tmp_path / "prog.c").write_text(src)
    subprocess.run(["gcc", "-Wall", "-Werror", f"-I{ENGINE_DIR}", f"-I{USERSPACE_DIR}", "-o",
                    str(tmp_path / "prog"), str(tmp_path / "prog.c")], check=True)
    out = subprocess.run([str(tmp_path / "prog")], stdin=open(tmp_path / "in.txt"), capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out) == [_csum(b) for b in blobs]
