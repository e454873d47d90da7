"""btrfs storage driver: each layer a subvolume, each child a snapshot of its parent."""

from __future__ import annotations

from kernel import hookimpl
from kernel.drivers import Availability, StorageDriver


class BtrfsDriver(StorageDriver):
    description = "btrfs subvolumes and snapshots"
    implemented = False

    @classmethod
    def probe(cls, home=None, options=None):
        from kernel import host

        if "btrfs" not in host.filesystems():
            return Availability.no("btrfs is not supported by this kernel")
        if home is not None:
            fstype, mountpoint = host.filesystem_of(home)
            if fstype != "btrfs":
                return Availability.no(f"{home} is not on btrfs ({mountpoint} is {fstype})")
        try:
            import btrfsutil  # noqa: F401
        except ImportError:
            if host.which("btrfs") is None:
                return Availability.no("neither the btrfsutil Python binding nor the btrfs command is installed")
        return Availability.ok()


@hookimpl
def pallet_register_storage_drivers(register):
    register("btrfs", BtrfsDriver)
