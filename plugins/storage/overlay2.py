"""overlay2 storage driver: layers as overlayfs lower dirs with short link names, as moby's overlay2."""

from __future__ import annotations

from kernel import hookimpl
from kernel.drivers import Availability, StorageDriver


class Overlay2Driver(StorageDriver):
    description = "overlayfs with per-layer diff dirs"
    implemented = False

    @classmethod
    def probe(cls, home=None, options=None):
        from kernel import host

        if "overlay" not in host.filesystems():
            return Availability.no("overlayfs is not supported by this kernel")
        if home is not None:
            fstype, mountpoint = host.filesystem_of(home)
            if fstype in ("overlay", "aufs"):
                return Availability.no(f"{mountpoint} is on {fstype}, which overlayfs cannot use as upper dir")
        return Availability.ok()


@hookimpl
def pallet_register_storage_drivers(register):
    register("overlay2", Overlay2Driver)
