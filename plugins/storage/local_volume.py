"""local volume driver: volumes as directories under the root, or tmpfs/bind mounts like Docker's local driver."""

from __future__ import annotations

from kernel import hookimpl
from kernel.drivers import Availability, VolumeDriver


class LocalVolumeDriver(VolumeDriver):
    description = "directories under the pallet root; type=tmpfs|none,o=bind,device=…"
    implemented = False

    @classmethod
    def probe(cls, home=None, options=None):
        return Availability.ok()


@hookimpl
def pallet_register_volume_drivers(register):
    register("local", LocalVolumeDriver)
