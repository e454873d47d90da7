"""vfs storage driver: every layer a full copy of its parent. Slow, and works on any filesystem."""

from __future__ import annotations

from kernel import hookimpl
from kernel.drivers import Availability, StorageDriver


class VfsDriver(StorageDriver):
    description = "full copies of every layer; works everywhere"
    implemented = False

    @classmethod
    def probe(cls, home=None, options=None):
        return Availability.ok()


@hookimpl
def pallet_register_storage_drivers(register):
    register("vfs", VfsDriver)
