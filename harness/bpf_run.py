"""Running a loaded XDP or TC program on a packet without a NIC, through the
kernel's BPF_PROG_TEST_RUN (libbpf's bpf_prog_test_run_opts, which libbcc
carries): the verdict, the packet as the program left it, and the time."""
from __future__ import annotations

import ctypes
import os
from typing import NamedTuple

from . import HarnessError

XDP_VERDICTS = {0: "XDP_ABORTED", 1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX", 4: "XDP_REDIRECT"}
TC_VERDICTS = {0: "TC_ACT_OK", 2: "TC_ACT_SHOT", 7: "TC_ACT_REDIRECT", 0xFFFFFFFF: "TC_ACT_UNSPEC"}


class _Opts(ctypes.Structure):  # struct bpf_test_run_opts (libbpf 1.1)
    _fields_ = [("sz", ctypes.c_size_t), ("data_in", ctypes.c_void_p), ("data_out", ctypes.c_void_p),
                ("data_size_in", ctypes.c_uint32), ("data_size_out", ctypes.c_uint32),
                ("ctx_in", ctypes.c_void_p), ("ctx_out", ctypes.c_void_p),
                ("ctx_size_in", ctypes.c_uint32), ("ctx_size_out", ctypes.c_uint32),
                ("retval", ctypes.c_uint32), ("repeat", ctypes.c_int), ("duration", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32), ("batch_size", ctypes.c_uint32)]


class Result(NamedTuple):
    verdict: str
    packet: bytes
    duration_ns: int


def run(prog_fd: int, packet: bytes, repeat: int = 1, verdicts: dict = XDP_VERDICTS) -> Result:
    """Runs the program once (or repeat times) on packet; verdicts names
    its return codes (TC_VERDICTS for a TC program)."""
    from bcc.libbcc import lib
    fn = lib.bpf_prog_test_run_opts
    fn.argtypes = [ctypes.c_int, ctypes.POINTER(_Opts)]
    fn.restype = ctypes.c_int
    data_in = ctypes.create_string_buffer(packet, len(packet))
    data_out = ctypes.create_string_buffer(len(packet) + 256)
    opts = _Opts(sz=ctypes.sizeof(_Opts), data_in=ctypes.cast(data_in, ctypes.c_void_p),
                 data_out=ctypes.cast(data_out, ctypes.c_void_p), data_size_in=len(packet),
                 data_size_out=len(data_out), repeat=repeat)
    err = fn(prog_fd, ctypes.byref(opts))
    if err < 0:
        raise HarnessError(f"BPF_PROG_TEST_RUN failed: {os.strerror(-err)}")
    return Result(verdicts.get(opts.retval, str(opts.retval)), data_out.raw[:opts.data_size_out],
                  opts.duration)


class Runner:
    """One program run on many packets, one run per call, with the buffers
    and the call set up once: run() costs microseconds of Python per call,
    which a loop of a million fills (or of many timed requests) feels. The
    packet goes into self.data_in (write it there, e.g. with
    struct.pack_into, and pass its length), and after a call the output is
    self.data_out[:self.out_len]."""

    def __init__(self, prog_fd: int, size: int):
        from bcc.libbcc import lib
        self.fn = lib.bpf_prog_test_run_opts
        self.fn.argtypes = [ctypes.c_int, ctypes.POINTER(_Opts)]
        self.fn.restype = ctypes.c_int
        self.fd = prog_fd
        self.data_in = ctypes.create_string_buffer(size)
        self.data_out = ctypes.create_string_buffer(size + 256)
        self.opts = _Opts(sz=ctypes.sizeof(_Opts), data_in=ctypes.cast(self.data_in, ctypes.c_void_p),
                          data_out=ctypes.cast(self.data_out, ctypes.c_void_p), repeat=1)
        self.ref = ctypes.byref(self.opts)

    def run(self, length: int) -> int:
        """Runs the program once on the first length bytes of data_in;
        returns its return code (the duration is self.opts.duration)."""
        o = self.opts
        o.data_size_in, o.data_size_out = length, len(self.data_out)
        err = self.fn(self.fd, self.ref)
        if err < 0:
            raise HarnessError(f"BPF_PROG_TEST_RUN failed: {os.strerror(-err)}")
        return o.retval

    @property
    def duration_ns(self) -> int:
        return self.opts.duration

    @property
    def out_len(self) -> int:
        return self.opts.data_size_out
