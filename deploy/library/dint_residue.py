#!/usr/bin/python
"""Ansible module of dint-bench: what a run leaves on a host that it should
not (a server that died keeps its XDP program attached; DPDK keeps its
runtime files), found before a run starts and removed after its servers
stop.

state=checked  fails, naming each one, if the host has a process the
               harness did not start (local testbed host: any process in
               its network namespace; cluster host: any dint-bench server,
               client or neighbour process in the host's network namespace), a BPF program on one of its
               interfaces other than `allowed_xdp` (XDP, or TC filters on
               clsact), or a live DPDK runtime directory of ours.
               With `checkout` (a cluster host), it also fails if the
               project the host runs is not the controller's: the id
               `deploy setup` wrote into `checkout_file` differs.
state=cleaned  detaches every XDP program but `allowed_xdp` from the
               interfaces, removes TC filters (clsact) and the DPDK runtime
               directories in `paths`; returns what it removed.
"""
from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dint_leftovers import clean, found

DOCUMENTATION = r"""
module: dint_residue
short_description: find or remove what dead dint-bench processes left on a host
options:
  state: {type: str, required: true, choices: [checked, cleaned]}
  netns: {type: str, default: "", description: the host's network namespace (a local testbed host)}
  ifaces: {type: list, elements: str, default: [], description: the host's testbed interfaces}
  allowed_xdp: {type: list, elements: str, default: [], description: XDP program names that belong there}
  paths: {type: list, elements: str, default: [], description: runtime directories (globs) of the host's servers}
  tc: {type: bool, default: true, description: whether TC filters on the interfaces count}
  checkout: {type: str, default: "", description: the controller's checkout id (checked only)}
  checkout_file: {type: str, default: "", description: where deploy setup wrote the host's checkout id}
"""


def main() -> None:
    m = AnsibleModule(argument_spec=dict(
        state=dict(type="str", required=True, choices=["checked", "cleaned"]),
        netns=dict(type="str", default=""),
        ifaces=dict(type="list", elements="str", default=[]),
        allowed_xdp=dict(type="list", elements="str", default=[]),
        paths=dict(type="list", elements="str", default=[]),
        tc=dict(type="bool", default=True),
        checkout=dict(type="str", default=""),
        checkout_file=dict(type="str", default=""),
    ))
    p = m.params
    where = dict(netns=p["netns"], ifaces=p["ifaces"], allowed_xdp=p["allowed_xdp"], paths=p["paths"], tc=p["tc"])
    if p["state"] == "checked" and p["checkout"]:
        try:
            with open(p["checkout_file"]) as f:
                have = f.read().strip()
        except OSError:
            have = ""
        if have != p["checkout"]:
            m.fail_json(msg=f"the project here is {'checkout ' + have if have else 'not set up by deploy setup'}, "
                            f"not the controller's {p['checkout']}", checkout={"host": have or None,
                                                                               "controller": p["checkout"]})
    if p["state"] == "checked":
        left = found(**where)
        if left:
            m.fail_json(msg="left by something the harness did not start: " + "; ".join(left), found=left)
        m.exit_json(changed=False, found=[])
    removed, stale, left = clean(**where)
    if left:
        m.fail_json(msg="could not remove " + "; ".join(left), removed=removed)
    # runtime files are left by every DPDK process, not only a dead one
    m.exit_json(changed=bool(removed or stale), removed=removed, runtime_dirs=stale)


if __name__ == "__main__":
    main()
