"""dint-bench's staging of a cluster host's inputs for a run (used by
deploy/library/dint_proc.py, state=started with `stage`): one tar archive,
given inline (base64), of the directories of the host's processes' logs, pid
files, inputs and outputs and of their small input files, unpacked at / (its
members' names are absolute paths without the leading /); and the files in
`absent` removed first: the outputs of an earlier run at the same paths that
the controller does not have (a results directory removed there and used
again), so that the host's logs start where the controller's do. Made by
harness/deploy.py, stage(); large inputs are copied apart."""
from __future__ import annotations

import base64
import io
import os
import tarfile


class StageError(Exception):
    pass


def unpack(archive: str, absent: list[str]) -> dict:
    """Returns what was done: {dirs, files, removed}."""
    removed = 0
    try:
        for path in absent:
            try:
                os.unlink(path)
                removed += 1
            except FileNotFoundError:
                pass
        data = base64.b64decode(archive, validate=True)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members = tar.getmembers()
            for t in members:
                name = os.path.normpath("/" + t.name)
                if not (t.isdir() or t.isfile()) or name != "/" + t.name.rstrip("/"):
                    raise StageError(f"the staged archive holds {t.name!r}: only plain directories and files "
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
        raise StageError(f"cannot unpack the staged inputs: {e}") from None
    return {"dirs": sum(t.isdir() for t in members), "files": sum(t.isfile() for t in members),
            "removed": removed}
