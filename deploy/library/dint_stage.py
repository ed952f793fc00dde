#!/usr/bin/python
"""Ansible module of dint-bench: a cluster host's directories and small
input files for a run, from one tar archive given inline (base64), unpacked
at / (its members' names are absolute paths without the leading /), and
the files in `absent` removed: the outputs of an earlier run at the same
paths that the controller does not have (a results directory removed there
and used again), so that the host's logs start where the controller's do.
One module run in place of a task per directory and a copy (with its own
round trips) per file; large inputs are copied apart (harness/deploy.py,
stage()).
"""
from __future__ import annotations

import base64
import io
import os
import tarfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: dint_stage
short_description: unpack a run's directories and small inputs on a host
options:
  archive: {type: str, required: true, description: a tar archive, base64}
  absent: {type: list, elements: path, default: [], description: files removed first}
"""


def main() -> None:
    m = AnsibleModule(argument_spec=dict(archive=dict(type="str", required=True, no_log=True),
                                         absent=dict(type="list", elements="path", default=[])))
    removed = 0
    try:
        for path in m.params["absent"]:
            try:
                os.unlink(path)
                removed += 1
            except FileNotFoundError:
                pass
        data = base64.b64decode(m.params["archive"], validate=True)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members = tar.getmembers()
            for t in members:
                name = os.path.normpath("/" + t.name)
                if not (t.isdir() or t.isfile()) or name != "/" + t.name.rstrip("/"):
                    m.fail_json(msg=f"the staged archive holds {t.name!r}: only plain directories and files "
                                    f"at normal paths are unpacked")
            for t in members:
                if t.isdir():
                    os.makedirs("/" + t.name, mode=0o755, exist_ok=True)
            for t in members:
                if t.isfile():
                    path = "/" + t.name
                    tmp = f"{path}.stage-{os.getpid()}"
                    with tar.extractfile(t) as src, open(tmp, "wb") as dst:
                        dst.write(src.read())
                    os.chmod(tmp, 0o644)
                    os.replace(tmp, path)
    except (ValueError, tarfile.TarError, OSError) as e:
        m.fail_json(msg=f"cannot unpack the staged inputs: {e}")
    m.exit_json(changed=True, dirs=sum(t.isdir() for t in members), files=sum(t.isfile() for t in members),
                removed=removed)


if __name__ == "__main__":
    main()
