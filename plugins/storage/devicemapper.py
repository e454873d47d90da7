"""devicemapper storage driver: thin-pool devices and snapshots, as Docker's direct-lvm/loop-lvm."""

from __future__ import annotations

import errno
import os

from kernel import hookimpl
from kernel.drivers import Availability, StorageDriver


class DeviceMapperDriver(StorageDriver):
    description = "device-mapper thin provisioning"
    implemented = False

    @classmethod
    def probe(cls, home=None, options=None):
        from kernel import host

        if not _kernel_has_device_mapper():
            return Availability.no("device-mapper is not supported by this kernel")
        try:
            fd = os.open("/dev/mapper/control", os.O_RDWR)
            os.close(fd)
        except OSError as exc:
            return Availability.no(f"cannot open /dev/mapper/control: {os.strerror(exc.errno)}")
        if host.which("dmsetup") is None:
            return Availability.no("the dmsetup command is not installed")
        return Availability.ok()


def _kernel_has_device_mapper() -> bool:
    """The kernel lists 'device-mapper' in /proc/misc or /proc/devices when CONFIG_BLK_DEV_DM is on."""
    for path in ("/proc/misc", "/proc/devices"):
        try:
            with open(path) as handle:
                if "device-mapper" in handle.read():
                    return True
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
    return False


@hookimpl
def pallet_register_storage_drivers(register):
    register("devicemapper", DeviceMapperDriver)
