"""Command line of the harness: `python -m harness COMMAND ...`."""
from __future__ import annotations

import argparse
import json
import signal
import sys

from . import HarnessError


def _sigterm(*_):
    raise KeyboardInterrupt


def cmd_preflight(args) -> int:
    from . import preflight
    preflight.check()
    print("preflight: root, BPF and native XDP on veth are available")
    return 0


def cmd_testbed(args) -> int:
    from . import inventory
    from .testbed import Testbed, leftovers
    if args.action == "inventory":
        kw = {k: v for k, v in (("prefix", args.prefix), ("subnet", args.subnet)) if v}
        if args.simulated:
            data = inventory.sim_inventory(args.servers, args.clients, args.cpus, mgmt=args.mgmt or "10.76.0", **kw)
        elif args.mgmt:
            raise HarnessError("--mgmt is the management network of a simulated cluster: add --simulated")
        else:
            data = inventory.local_inventory(args.servers, args.clients, args.cpus, **kw)
        sys.stdout.write(inventory.dump(data))
        return 0
    inv = inventory.load(args.inventory)
    tb = Testbed(inv)
    if args.action == "up":
        made = tb.up()
        print(f"testbed {'up' if made else 'already up'}: {len(inv.servers)} servers, {len(inv.clients)} clients "
              f"({inv.source})")
    elif args.action == "down":
        tb.down()
        left = leftovers(inv)
        print("testbed down" if not left["namespaces"] else f"testbed down, but left: {left}")
    else:
        rows = tb.status()
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        for r in rows:
            state = "up" if r["exists"] else "absent"
            ifs = ", ".join(f"{i['name']}{' xdp=' + str(i['xdp_prog']) if i['xdp_prog'] else ''}"
                            for i in r["interfaces"])
            print(f"{r['host']:>4} {r['role']:<6} {r['netns']:<10} {state:<6} {r['address']:<12} "
                  f"cpus={r['cpus']} {ifs}")
            if "simulated" in r:
                sim = r["simulated"]
                print(f"       ssh root@{sim['mgmt']}: sshd {'pid ' + str(sim['sshd']) if sim['sshd'] else 'not running'}"
                      f", disk {sim['disk']} ({'project copied' if sim['project'] else 'no project yet'})")
            if r.get("faults"):
                line = r["faults"]["delay_line"]
                print(f"       fault injector attached ({r['faults']['pinned']})"
                      + (f", delay line {' -> '.join(line)}" if line else ""))
            for p in r["processes"]:
                print(f"       pid {p['pid']}: {p['cmd']}")
    return 0


def cmd_run(args) -> int:
    from .config import RunConfig
    from .experiments import check_repeat
    from .run import execute, execute_repeated
    from .summary import one_line
    check_repeat("--", args.repeat)
    cfg = RunConfig(system=args.system, workload=args.workload, concurrency=args.concurrency,
                    duration_s=args.duration, warmup_s=args.warmup, napi=args.napi, seed=args.seed,
                    value_size=args.value_size, keys=args.keys, store_capacity=args.store_capacity, clients_per_host=args.clients_per_host,
                    kernel_threads=args.kernel_threads, cache_fraction=args.cache_fraction,
                    cache_bloom=not args.no_bloom, cache_write_through=args.write_through,
                    client_gso=args.client_gso,
                    cc=args.cc, scale=args.scale, scale_divisor=args.scale_divisor,
                    scale_profile=args.scale_profile, kv_mix=args.kv_mix, rate=args.rate, neighbour=args.neighbour,
                    slowpath_cpus=args.slowpath_cpus, kv_value_size=args.kv_value_size,
                    faults=args.faults, key_dist=args.key_dist, lock_protocol=args.lock_protocol,
                    **({"inventory": args.inventory} if args.inventory else {}),
                    **({"rto_min_ms": args.rto_min_ms} if args.rto_min_ms is not None else {}),
                    **({"server_window": args.server_window} if args.server_window is not None else {})).validate()
    if args.repeat > 1:
        execute_repeated(cfg, args.out, args.repeat)
        print(f"results: {args.out}/r1 .. r{args.repeat}, {args.out}/points-summary.csv")
        return 0
    summary = execute(cfg, args.out)
    print(one_line(summary))
    print(f"results: {args.out}/summary.json")
    return 0


def cmd_deploy(args) -> int:
    """Runs deploy/setup.yml (packages, headers, bpffs, the project, make
    setup) on every host of the inventory."""
    import time
    from pathlib import Path
    from . import RESULTS_DIR, inventory
    from .deploy import Deployer
    inv = inventory.load(args.inventory)
    pdir = Path(args.out) if args.out else RESULTS_DIR / "deploy" / time.strftime("%Y%m%d-%H%M%S")
    Deployer(inv, pdir).setup()
    print(f"deploy setup: {len(inv.hosts)} hosts ready ({inv.source}); event log in {pdir}/artifacts")
    return 0


def cmd_reproduce(args) -> int:
    from .reproduce import reproduce
    reproduce(args.run_id, args.inventory, args.profile, args.only, plan_only=args.plan)
    return 0


def cmd_compare(args) -> int:
    from .compare import main
    main(args.run_a, args.run_b, args.out)
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m harness",
                                 description="dint-bench: DINT vs the kernel stack vs kernel-bypass")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("preflight", help="check root, BPF and XDP on veth")
    p.set_defaults(func=cmd_preflight)

    p = sub.add_parser("testbed", help="the local namespace testbed")
    p.add_argument("action", choices=["up", "down", "status", "inventory"])
    p.add_argument("--inventory", help="inventory file (default inventory/local.yml)")
    p.add_argument("--json", action="store_true", help="status as JSON")
    p.add_argument("--servers", type=int, default=3, help="inventory: number of server hosts")
    p.add_argument("--clients", type=int, default=1, help="inventory: number of client hosts")
    p.add_argument("--cpus", type=int, default=None, help="inventory: CPUs to split (default: this machine's)")
    p.add_argument("--simulated", action="store_true",
                   help="inventory: a simulated cluster (hosts reached over SSH, with their own mounts)")
    p.add_argument("--prefix", help="inventory: namespace prefix, 1-8 letters or digits (default dint; sim)")
    p.add_argument("--subnet", help="inventory: the experiment /24, three octets (default 10.77.0; simulated 10.75.0)")
    p.add_argument("--mgmt", help="inventory: a simulated cluster's management /24 (default 10.76.0)")
    p.set_defaults(func=cmd_testbed)

    p = sub.add_parser("run", help="one measured run")
    p.add_argument("--system", required=True, choices=["dint", "kernel", "bypass"])
    p.add_argument("--workload", default="echo", choices=list(__import__("workloads").NAMES),
                   help="echo; kv: 40-byte records (DINT's KV store, see --kv-mix); log: appends; "
                        "lock: transactions locking 5-10 keys (see --cc); smallbank, tatp, tpcc: replicated transactions (see --scale, --cc)")
    p.add_argument("--keys", type=int, default=100_000, help="kv, log: keys per table")
    p.add_argument("--store-capacity", type=int, default=0,
                   help="records per server store (default: twice the keys, at least 4096)")
    p.add_argument("--concurrency", type=int, default=1, help="requests in flight per client process")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before the measured window")
    p.add_argument("--napi", default="pinned", choices=["pinned", "inline"],
                   help="where server packet work runs: pinned to the server cores, or inline on the client's")
    p.add_argument("--out", required=True, help="results directory of this run")
    p.add_argument("--repeat", type=int, default=1,
                   help="runs of this configuration, each a full measurement of its own in OUT/r1 .. rN, then "
                        "their medians and intervals in OUT/points-summary.csv (default 1: the run in OUT)")
    p.add_argument("--inventory", help="inventory file (default inventory/local.yml)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--value-size", type=int, default=24, help="echo value bytes (default: 64-byte payloads)")
    p.add_argument("--clients-per-host", type=int, default=1)
    p.add_argument("--kernel-threads", type=int, default=1, help="kernel server threads per host")
    p.add_argument("--cache-fraction", type=float, default=0.0,
                   help="dint: cache slots for this fraction of the records (default 0: the default budget, one 4-slot bucket per record)")
    p.add_argument("--client-gso", choices=("auto", "on", "off"), default="auto",
                   help="the client groups same-size runs of datagrams to a server into UDP GSO sends (on), "
                        "sends datagram by datagram (off), or groups them when it has several servers (auto, "
                        "the default); servers see the same datagrams either way")
    p.add_argument("--no-bloom", action="store_true",
                   help="dint ablation: no bloom filter, every cache miss goes to the slow path")
    p.add_argument("--write-through", action="store_true",
                   help="dint ablation: write-through cache (every write goes to the slow path)")
    # transactional microbenchmarks; the choices are checked by RunConfig, for one clear message
    p.add_argument("--cc", "--lock-mode", dest="cc", default="",
                   help="concurrency control of lock, smallbank, tatp, tpcc: 2pl (no-wait two-phase locking) "
                        "or occ (FaSST-style); default: the workload's (lock, smallbank: 2pl; tatp, tpcc: occ)")
    p.add_argument("--rate", type=float, default=0.0,
                   help="open loop: transactions (echo/kv/log: requests) per second per client process, on a "
                        "schedule fixed in advance; --concurrency caps those in flight (default 0: closed loop)")
    p.add_argument("--rto-min", type=float, default=None, dest="rto_min_ms",
                   help="the least retransmission timeout, ms: the measured one (smoothed round trip + 4 "
                        "deviations) never goes below it (default: RunConfig.rto_min_ms)")
    p.add_argument("--server-window", type=int, default=None, dest="server_window",
                   help="requests a client keeps on the wire to one server at most, the rest queued until answers "
                        "make room; 0: no limit (default: RunConfig.server_window, under the testbed's veth rings)")
    p.add_argument("--neighbour", action="store_true",
                   help="colocation: a CPU-bound neighbour on every server host's cores, its work rate measured")
    p.add_argument("--slowpath-cpus", default="xdp",
                   help="dint: where its user space (dintd and the slow path) runs: xdp (the server host's cores, "
                        "where XDP runs and the NIC's interrupts go; the default) or own (the inventory's "
                        "slowpath_cpus; on a testbed, the machine's cores no server runs on)")
    p.add_argument("--kv-value-size", type=int, default=40,
                   help="kv: the records' value bytes (default 40, DINT's); dint's XDP program loads up to about "
                        "949 here (`harness verifier --schema N`)")
    p.add_argument("--scale", type=int, default=0,
                   help="smallbank: accounts; tatp: subscribers; tpcc: warehouses (default: the workload's "
                        "--scale-profile)")
    p.add_argument("--scale-divisor", type=int, default=0,
                   help="tpcc: divide the items, customers and orders by 1 (the specification's), 10 or 100 "
                        "(default: the workload's --scale-profile)")
    p.add_argument("--scale-profile", default="local",
                   help="where --scale and --scale-divisor default from: local (sized for one 2-core host) or "
                        "paper (DINT's scale, for a cluster)")
    p.add_argument("--kv-mix", default="parallel",
                   help="kv: parallel (100%% reads) or contention (80%% reads, 20%% writes)")
    p.add_argument("--key-dist", default="uniform",
                   help="kv, log, lock: how keys are drawn: uniform (the default), nurand:A (TATP's NURand, as "
                        "DINT's KV client draws its keys: nurand:1048575) or zipf:THETA (0 <= THETA < 1, YCSB's "
                        "zipfian, e.g. zipf:0.99); the same seed gives every system the same keys")
    p.add_argument("--lock-protocol", default="parallel",
                   help="lock, --cc 2pl: parallel (the default: a transaction's locks in one batch) or sequential "
                        "(DINT's lock client: one lock per round trip in key order; on a rejection, release and "
                        "retry the same transaction)")
    p.add_argument("--faults", default="",
                   help="fault injection on every client host's ends (on a cluster, by a host agent over SSH), "
                        "e.g. reply-loss=1%%,request-loss=1%%,dup=5%%,late-dup=5%%,reorder=2%% (optional: "
                        "late-delay=50ms-1s, reorder-delay=200us-2ms, fault-seed=N; default seed: --seed)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("deploy", help="set hosts up through Ansible (deploy/setup.yml)")
    p.add_argument("action", choices=["setup"])
    p.add_argument("--inventory", help="inventory file (default inventory/local.yml)")
    p.add_argument("--out", help="where the event log goes (default results/deploy/<time>)")
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("reproduce", help="the evaluation (make reproduce)")
    p.add_argument("--run-id", help="results/<run-id> (reusing one resumes it)")
    p.add_argument("--inventory", help="inventory file (default inventory/local.yml)")
    p.add_argument("--profile", default="local",
                   help="experiments/<profile>.yml (local, paper) or an experiment file's path (default local)")
    p.add_argument("--only", help="run only the points whose name contains this")
    p.add_argument("--plan", action="store_true",
                   help="print each host's largest memory need over the points against its memory, and the "
                        "expected duration, then exit (nonzero, in one line, if a host cannot hold a point)")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("compare", help="the change of each point's headline metrics from one results directory "
                                       "to another, with 95%% intervals (like benchstat)")
    p.add_argument("run_a", metavar="RUN_A", help="the baseline: a reproduce run's directory, or of `harness run`s")
    p.add_argument("run_b", metavar="RUN_B", help="the one compared with it")
    p.add_argument("--out", help="the CSV to write (default RUN_B/compare-<RUN_A's name>.csv)")
    p.set_defaults(func=cmd_compare)

    from .fuzz import add_parser as add_fuzz_parser  # packet fuzzing (harness/fuzz.py)
    add_fuzz_parser(sub)
    from .xdpbench import add_parser as add_xdpbench_parser  # the XDP program's cost per operation
    add_xdpbench_parser(sub)
    from .verifier import add_parser as add_verifier_parser  # the verifier's figures of every BPF program
    add_verifier_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        return args.func(args)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the machine refused (permissions, disk): one line, not a traceback
        print(f"error: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: servers stopped, XDP detached, testbed cleaned up", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
