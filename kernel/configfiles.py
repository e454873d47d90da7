"""Cluster configs given to a container: one file each in its run directory, bound read-only at its target.

A config is not secret (Docker stores it unencrypted too), so the files are plain files under the
container's run directory (``configs/<n>``), written at each start from the cluster store with the
reference's owner and mode, and removed with the run directory. A reference is Docker's
``ConfigReference``: ``{"File": {"Name": target, "UID", "GID", "Mode"}, "ConfigID", "ConfigName"}``;
a target that is not absolute is taken from ``/`` (Docker's default target is ``/<name>``).
"""

from __future__ import annotations

import os
from pathlib import Path

from pallet.kernel.errors import NotFound, PalletError
from pallet.kernel.fsutil import write_owned

CONFIG_DIR = "configs"


def target(ref: dict) -> str:
    name = ref["File"]["Name"] or ref.get("ConfigName", "")
    return os.path.normpath("/" + name.lstrip("/"))


def prepare(engine, record, run_dir: Path) -> list[dict]:
    """Write the container's configs under ``run_dir`` and return their OCI bind mounts (none without configs)."""
    refs = (record.host_config or {}).get("Configs") or []
    if not refs:
        return []
    from pallet.kernel.cluster import configs  # after the check: the cluster store imports ~7 ms

    home = Path(run_dir) / CONFIG_DIR
    home.mkdir(mode=0o755, exist_ok=True)
    remap = engine.storage_remap
    mounts = []
    for index, ref in enumerate(refs):
        try:
            data = configs.data(engine, ref["ConfigID"])
        except NotFound:
            raise NotFound(f"config not found: {ref.get('ConfigName') or ref['ConfigID']} "
                           f"(container {record.name} needs it)") from None
        path = home / str(index)
        tmp = home / f".{index}.tmp"
        try:
            uid, gid = int(ref["File"].get("UID") or 0), int(ref["File"].get("GID") or 0)
            write_owned(tmp, data, remap.shift(uid, gid) if remap is not None else (uid, gid),
                        int(ref["File"].get("Mode", 0o444)), exclusive=False)
        except (OSError, ValueError) as exc:
            raise PalletError(f"config {ref.get('ConfigName', '')}: {exc}") from None
        os.replace(tmp, path)
        mounts.append({"destination": target(ref), "type": "bind", "source": str(path),
                       "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]})
    return mounts
