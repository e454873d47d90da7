"""default IPAM: subnets from a configurable pool list, addresses allocated under a lock on disk."""

from __future__ import annotations

from kernel import hookimpl
from kernel.drivers import Availability, IpamDriver


class DefaultIpam(IpamDriver):
    description = "local pools and addresses with on-disk state"
    implemented = False

    @classmethod
    def probe(cls, home=None, options=None):
        return Availability.ok()


@hookimpl
def pallet_register_ipam_drivers(register):
    register("default", DefaultIpam)
