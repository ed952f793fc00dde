"""The tables a build serves: how many and each one's value size, fixed at
build time. One schema gives the same -D flags to the XDP program (through
bcc) and to the baseline servers (built into a directory of their own per
schema), so the three systems always agree on it."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from . import BUILD_DIR, ROOT, HarnessError
from .protocol import MAX_VALUE
from .sh import run

MAX_TABLES = 8  # DINT_MAX_TABLES (engine/dint_engine.h), checked by tests/test_constants.py


@dataclass(frozen=True)
class Schema:
    sizes: tuple[int, ...] = (8, 40, 0)  # the engine's defaults (engine/dint_engine.h), checked by the tests

    def __post_init__(self):
        if not 1 <= len(self.sizes) <= MAX_TABLES:
            raise HarnessError(f"a schema has 1 to {MAX_TABLES} tables, not {len(self.sizes)}")
        if not all(isinstance(s, int) and 0 <= s <= MAX_VALUE for s in self.sizes):
            raise HarnessError(f"table value sizes must be 0..{MAX_VALUE} bytes: {self.sizes}")

    @classmethod
    def parse(cls, text: str) -> "Schema":
        try:
            return cls(tuple(int(x) for x in text.split(",")))
        except ValueError:
            raise HarnessError(f"a schema is comma-separated value sizes, like 8,40,0: {text!r}") from None

    def __str__(self) -> str:
        return ",".join(map(str, self.sizes))

    @property
    def val_max(self) -> int:
        return max(max(self.sizes), 1)

    def vsize_expr(self) -> str:
        expr = "0"
        for t in reversed(range(len(self.sizes))):
            expr = f"((t)=={t}?{self.sizes[t]}:{expr})"
        return expr

    def cflags(self) -> list[str]:
        return [f"-DDINT_NTABLES={len(self.sizes)}", f"-DDINT_VSIZE(t)={self.vsize_expr()}",
                f"-DDINT_VAL_MAX={self.val_max}"]

    @property
    def build_dir(self):
        if self == Schema():
            return BUILD_DIR
        return BUILD_DIR / f"schema-{hashlib.sha256(str(self).encode()).hexdigest()[:10]}"

    def make_command(self) -> list[str]:
        """The make command that builds the baseline servers and dint's slow
        path for this schema (make skips what is current; the three are
        built in parallel)."""
        d = self.build_dir.relative_to(ROOT)
        flags = "" if self == Schema() else " ".join(f"'{f}'" for f in self.cflags())
        return ["make", "-s", "-j3", "-C", str(ROOT), f"BUILD={d}", f"SCHEMA_CFLAGS={flags}",
                f"{d}/kernel_server", f"{d}/bypass_server", f"{d}/dint_slowpath"]

    def ensure_built(self) -> None:
        """Builds them here and now."""
        run(self.make_command())
