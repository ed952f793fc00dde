"""Experiment files (experiments/<profile>.yml): the evaluation, figure by
figure, as data. A file is parsed, validated (one clear error line naming
the problem) and expanded into points, one run each.

File format::

    version: 1
    profile: local
    description: ...
    defaults: {duration_s: 2, warmup_s: 1}   # RunConfig fields of every point
    systems: [dint, kernel, bypass]          # default systems of every experiment
    repeat: 1                                # default repetitions of every point
    experiments:
      - name: micro-lock                     # [a-z0-9-], unique
        figure: curve                        # see FIGURES
        title: Lock server, throughput vs latency
        workloads: [lock]                    # or `workload: lock`
        systems: [dint, kernel, bypass]      # optional
        config: {keys: 100000}               # optional, RunConfig fields
        variants:                            # optional: one line / bar group each
          - {name: 2pl, cc: 2pl}
          - {name: occ, cc: occ}
        repeat: 5                            # optional: repetitions of each point
        sweep: {concurrency: [1, 8, 32]}     # optional: one field and its values
                                             # (faults: ["", "reply-loss=1%"] sweeps
                                             # fault injection, harness/faults.py)

A point is one (workload, variant, system, sweep value), run `repeat`
times (each a full run of its own; harness/reproduce.py interleaves the
repetitions across systems). Workload-specific
fields may be given per workload: `config: {by_workload: {tpcc: {scale: 1}}}`.
Every field must be one of RunConfig's, and every point is validated as a
RunConfig before anything runs."""
from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

import workloads

from . import ROOT, HarnessError
from .config import SYSTEMS, RunConfig

EXPERIMENTS_DIR = ROOT / "experiments"
DEFAULT_PROFILE = "local"
FIGURES = {
    "calibration": "echo calibration: the client's own ceiling per system",
    "curve": "throughput-latency curves over a closed-loop sweep",
    "cpu": "server CPU per operation at fixed offered rates (open loop)",
    "ablation": "bars: one system's variants side by side",
    "colocation": "bars: each system with and without a CPU-bound neighbour",
    "latency": "unloaded latency table (concurrency 1)",
    "faults": "goodput and p99 latency against injected loss (a sweep of --faults), per system",
    "sweep": "goodput and latency against a swept setting at a fixed load (kv_value_size, key_dist), per system",
}
KNOWN_WORKLOADS = workloads.NAMES
TOP_KEYS = {"version", "profile", "description", "defaults", "systems", "repeat", "experiments", "xdpbench"}
# `xdpbench`: the XDP program's cost per operation (harness/xdpbench.py),
# measured once a run after its points, over these key counts
XDPBENCH_KEYS = {"keys", "rounds", "calls"}
EXP_KEYS = {"name", "figure", "title", "workload", "workloads", "systems", "config", "variants", "sweep", "note",
            "repeat"}
MAX_REPEAT = 100
# Fields an experiment may not set: the runner owns them.
RESERVED = {"system", "workload", "inventory"}
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def config_fields() -> dict[str, type]:
    """RunConfig's fields and their types."""
    types = {f.name: type(f.default) for f in dataclasses.fields(RunConfig)
             if f.default is not dataclasses.MISSING}
    types["concurrency"] = int
    return types


@dataclass
class Point:
    name: str                 # directory name under results/<run-id>/
    experiment: str
    figure: str
    workload: str
    system: str
    variant: str              # the variant's name ("" without variants)
    sweep_field: str
    sweep_value: object
    fields: dict = field(default_factory=dict)  # every RunConfig field set (but system, workload)
    repeat: int = 1           # repetitions, each a run of its own

    def config(self, inventory: str | None = None) -> RunConfig:
        kw = {"system": self.system, "workload": self.workload, **self.fields}
        if inventory:
            kw["inventory"] = str(inventory)
        return RunConfig(**kw).validate()


@dataclass
class Experiment:
    name: str
    figure: str
    title: str
    workloads: list[str]
    systems: list[str]
    config: dict
    by_workload: dict
    variants: list[dict]
    sweep_field: str
    sweep_values: list
    note: str = ""
    repeat: int = 1


@dataclass
class ExperimentFile:
    path: Path
    profile: str
    description: str
    defaults: dict
    experiments: list[Experiment]
    raw: dict
    xdpbench: dict | None = None  # {keys: [int], rounds: int, calls: int}

    def points(self) -> list[Point]:
        out = []
        for e in self.experiments:
            out += expand(e, self.defaults)
        return out


def _check_xdpbench(where: str, value) -> dict | None:
    """The `xdpbench` section: key counts (whole numbers from 1), rounds and
    calls (whole numbers from 1; defaults 3 and 500)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise HarnessError(f"{where}: must be a mapping with {', '.join(sorted(XDPBENCH_KEYS))}")
    bad = set(value) - XDPBENCH_KEYS
    if bad:
        raise HarnessError(f"{where}: unknown key {sorted(bad)[0]!r} (allowed: {', '.join(sorted(XDPBENCH_KEYS))})")
    out = {"keys": value.get("keys"), "rounds": value.get("rounds", 3), "calls": value.get("calls", 500)}
    keys = out["keys"]
    if not isinstance(keys, list) or not keys or not all(type(k) is int and k >= 1 for k in keys):
        raise HarnessError(f"{where}: keys must be a non-empty list of whole numbers from 1, not {keys!r}")
    for k in ("rounds", "calls"):
        if type(out[k]) is not int or out[k] < 1:
            raise HarnessError(f"{where}: {k} must be a whole number from 1, not {out[k]!r}")
    return out


def check_repeat(where: str, value) -> int:
    """A repetition count: a whole number from 1 to MAX_REPEAT."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_REPEAT:
        raise HarnessError(f"{where}repeat must be a whole number from 1 to {MAX_REPEAT}, not {value!r}")
    return value


def resolve_path(profile_or_path: str | None) -> Path:
    """A profile name (experiments/<name>.yml) or a file path."""
    p = profile_or_path or DEFAULT_PROFILE
    path = Path(p)
    if path.suffix in (".yml", ".yaml") or path.exists() and path.is_file():
        if not path.exists():
            raise HarnessError(f"experiment file {path} not found")
        return path
    path = EXPERIMENTS_DIR / f"{p}.yml"
    if not path.exists():
        known = ", ".join(sorted(x.stem for x in EXPERIMENTS_DIR.glob("*.yml")))
        raise HarnessError(f"no profile {p!r}: {path} not found (profiles: {known})")
    return path


def load(profile_or_path: str | None = None) -> ExperimentFile:
    path = resolve_path(profile_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise HarnessError(f"{path}:{where} not valid YAML: {getattr(e, 'problem', e)}") from None
    return parse(raw, str(path))


def _check_fields(where: str, data, types: dict[str, type], allow_reserved: bool = False) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise HarnessError(f"{where}: must be a mapping of configuration fields, not {type(data).__name__}")
    for k, v in data.items():
        if k in RESERVED and not allow_reserved:
            raise HarnessError(f"{where}: {k!r} is set by the experiment itself, not in a config")
        if k not in types:
            near = [n for n in types if n.replace("_", "") == str(k).replace("_", "").replace("-", "")]
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise HarnessError(f"{where}: unknown configuration field {k!r}{hint}")
        want = types[k]
        ok = isinstance(v, want) and not (want is int and isinstance(v, bool))
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            ok = True
        if not ok:
            raise HarnessError(f"{where}: {k} must be {want.__name__}, not {v!r}")
    return dict(data)


def parse(raw, source: str = "<experiments>") -> ExperimentFile:
    def fail(msg: str):
        raise HarnessError(f"{source}: {msg}")

    if not isinstance(raw, dict):
        fail("must be a mapping with 'experiments'")
    unknown = set(raw) - TOP_KEYS
    if unknown:
        fail(f"unknown top-level key {sorted(unknown)[0]!r} (allowed: {', '.join(sorted(TOP_KEYS))})")
    if raw.get("version") != 1:
        fail(f"version must be 1, not {raw.get('version')!r}")
    types = config_fields()
    defaults = _check_fields(f"{source}: defaults", raw.get("defaults"), types)
    systems = raw.get("systems", list(SYSTEMS))
    _check_systems(f"{source}: systems", systems)
    repeat = check_repeat(f"{source}: ", raw.get("repeat", 1))
    exps = raw.get("experiments")
    if not isinstance(exps, list) or not exps:
        fail("'experiments' must be a non-empty list")
    out, seen = [], set()
    for i, e in enumerate(exps):
        label = f"experiments[{i}]"
        if not isinstance(e, dict):
            fail(f"{label} must be a mapping")
        if isinstance(e.get("name"), str):
            label += f" ({e['name']})"
        where = f"{source}: {label}"
        bad = set(e) - EXP_KEYS
        if bad:
            raise HarnessError(f"{where}: unknown key {sorted(bad)[0]!r} (allowed: {', '.join(sorted(EXP_KEYS))})")
        name = e.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise HarnessError(f"{where}: 'name' must be lowercase letters, digits and '-', not {name!r}")
        if name in seen:
            raise HarnessError(f"{where}: duplicate experiment name {name!r}")
        seen.add(name)
        fig = e.get("figure")
        if fig not in FIGURES:
            raise HarnessError(f"{where}: 'figure' must be one of {', '.join(FIGURES)}, not {fig!r}")
        if ("workload" in e) == ("workloads" in e):
            raise HarnessError(f"{where}: give exactly one of 'workload' and 'workloads'")
        wls = [e["workload"]] if "workload" in e else e["workloads"]
        if not isinstance(wls, list) or not wls:
            raise HarnessError(f"{where}: 'workloads' must be a non-empty list")
        for w in wls:
            if w not in KNOWN_WORKLOADS:
                raise HarnessError(f"{where}: unknown workload {w!r} (known: {', '.join(KNOWN_WORKLOADS)})")
        esys = e.get("systems", systems)
        _check_systems(f"{where}: systems", esys)
        erepeat = check_repeat(f"{where}: ", e.get("repeat", repeat))
        config = dict(e.get("config") or {})
        by_wl = config.pop("by_workload", {}) if isinstance(config, dict) else {}
        config = _check_fields(f"{where}: config", config, types)
        if not isinstance(by_wl, dict):
            raise HarnessError(f"{where}: config.by_workload must map workloads to fields")
        for w, f in by_wl.items():
            if w not in wls:
                raise HarnessError(f"{where}: config.by_workload names {w!r}, which the experiment does not run")
            _check_fields(f"{where}: config.by_workload.{w}", f, types)
        variants = e.get("variants") or [{}]
        if not isinstance(variants, list):
            raise HarnessError(f"{where}: 'variants' must be a list of mappings")
        vnames = set()
        for j, v in enumerate(variants):
            if not isinstance(v, dict):
                raise HarnessError(f"{where}: variants[{j}] must be a mapping")
            v = dict(v)
            vname = v.pop("name", None if len(variants) > 1 else "")
            if vname is None and len(variants) > 1:
                raise HarnessError(f"{where}: variants[{j}] needs a 'name' (there are several)")
            if not isinstance(vname, str) or (vname and not NAME_RE.match(vname)):
                raise HarnessError(f"{where}: variants[{j}] name must be lowercase letters, digits and '-'")
            if vname in vnames:
                raise HarnessError(f"{where}: duplicate variant name {vname!r}")
            vnames.add(vname)
            _check_fields(f"{where}: variants[{j}] ({vname})", v, types)
        sweep = e.get("sweep")
        if sweep is None:
            sfield, svalues = "", [None]
        else:
            if not isinstance(sweep, dict) or len(sweep) != 1:
                raise HarnessError(f"{where}: 'sweep' must map exactly one field to its values, "
                                   "e.g. {concurrency: [1, 8, 32]}")
            (sfield, svalues), = sweep.items()
            if sfield not in types or sfield in RESERVED:
                raise HarnessError(f"{where}: sweep: unknown configuration field {sfield!r}")
            if not isinstance(svalues, list) or not svalues:
                raise HarnessError(f"{where}: sweep.{sfield} must be a non-empty list")
            for val in svalues:
                _check_fields(f"{where}: sweep.{sfield}", {sfield: val}, types)
            if len(set(map(str, svalues))) != len(svalues):
                raise HarnessError(f"{where}: sweep.{sfield} repeats a value")
        title = e.get("title") or name
        out.append(Experiment(name=name, figure=fig, title=str(title), workloads=list(wls), systems=list(esys),
                              config=config, by_workload=by_wl,
                              variants=[dict(v) for v in variants], sweep_field=sfield, sweep_values=list(svalues),
                              note=str(e.get("note") or ""), repeat=erepeat))
    ef = ExperimentFile(path=Path(source), profile=str(raw.get("profile") or Path(source).stem),
                        description=str(raw.get("description") or ""), defaults=defaults, experiments=out, raw=raw,
                        xdpbench=_check_xdpbench(f"{source}: xdpbench", raw.get("xdpbench")))
    _check_points(ef, source)
    return ef


def _check_systems(where: str, systems) -> None:
    if not isinstance(systems, list) or not systems:
        raise HarnessError(f"{where}: must be a non-empty list")
    for s in systems:
        if s not in SYSTEMS:
            raise HarnessError(f"{where}: unknown system {s!r} (known: {', '.join(SYSTEMS)})")


def _check_points(ef: ExperimentFile, source: str) -> None:
    """Every point must make a valid RunConfig, so a bad value fails before
    anything runs; names must be unique."""
    names: dict[str, str] = {}
    for p in ef.points():
        if p.name in names:
            raise HarnessError(f"{source}: two points named {p.name} (experiments {names[p.name]} and "
                               f"{p.experiment})")
        names[p.name] = p.experiment
        try:
            p.config()
        except HarnessError as e:
            raise HarnessError(f"{source}: experiment {p.experiment}, point {p.name}: {e}") from None


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


SWEEP_TAGS = {"concurrency": "c", "rate": "r", "kv_value_size": "v"}


def sweep_tag(name: str, value) -> str:
    """A point name's part for a sweep value: c32, r1000, v512, or for
    faults and key distributions the spec made readable (no-faults,
    reply-loss-1pct; uniform, zipf-0-99)."""
    if name == "faults":
        from .faults import tag
        return tag(value)
    if name == "key_dist":
        return re.sub(r"[^a-z0-9]+", "-", str(value).lower()).strip("-")
    return SWEEP_TAGS.get(name, name.replace("_", "-")) + _fmt(value)


def expand(e: Experiment, defaults: dict) -> list[Point]:
    out = []
    for wl, v, system, val in itertools.product(e.workloads, e.variants, e.systems, e.sweep_values):
        v = dict(v)
        vname = v.pop("name", "")
        fields = {**defaults, **e.config, **e.by_workload.get(wl, {}), **v}
        parts = [e.name] + ([wl] if len(e.workloads) > 1 else []) + ([vname] if vname else []) + [system]
        if e.sweep_field:
            fields[e.sweep_field] = val
            parts.append(sweep_tag(e.sweep_field, val))
        out.append(Point(name="__".join(parts), experiment=e.name, figure=e.figure, workload=wl, system=system,
                         variant=vname, sweep_field=e.sweep_field, sweep_value=val, fields=fields, repeat=e.repeat))
    return out


def resolved(ef: ExperimentFile) -> dict:
    """The experiment file as run: its text plus every point's fields."""
    return {"source": str(ef.path), "profile": ef.profile, "description": ef.description,
            "file": ef.raw,
            "points": [{"name": p.name, "experiment": p.experiment, "figure": p.figure, "workload": p.workload,
                        "system": p.system, "variant": p.variant, "repeat": p.repeat, "fields": p.fields}
                       for p in ef.points()]}
