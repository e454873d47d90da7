"""zfs storage driver: each layer a dataset, children as clones of the parent's snapshot.

Drives the ``zfs``/``zpool`` commands (as moby's driver does): ``pyzfs`` needs
``libzfs_core``, which zfs-fuse hosts such as this one do not have.
"""

from __future__ import annotations

import subprocess

from kernel import hookimpl
from kernel.drivers import Availability, StorageDriver


class ZfsDriver(StorageDriver):
    description = "zfs datasets, snapshots and clones"
    implemented = False

    @classmethod
    def probe(cls, home=None, options=None):
        from kernel import host

        options = options or {}
        if host.which("zfs") is None or host.which("zpool") is None:
            return Availability.no("the zfs and zpool commands are not installed")
        try:
            pools = subprocess.run(["zpool", "list", "-H", "-o", "name"], capture_output=True, text=True, timeout=10)
        except subprocess.TimeoutExpired:
            return Availability.no("zpool list timed out")
        if pools.returncode != 0:
            message = (pools.stderr.strip() or pools.stdout.strip()).splitlines()
            return Availability.no(f"zfs is not reachable: {message[0] if message else 'zpool list failed'}")
        names = pools.stdout.split()
        if not names:
            return Availability.no("no zfs pool is imported")
        fsname = options.get("zfs.fsname")
        if fsname and fsname.split("/")[0] not in names:
            return Availability.no(f'zfs.fsname "{fsname}" is not on an imported pool ({", ".join(names)})')
        return Availability.ok(f"pools: {', '.join(names)}")


@hookimpl
def pallet_register_storage_drivers(register):
    register("zfs", ZfsDriver)
