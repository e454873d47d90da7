"""none network driver: a private network namespace with only the loopback interface up."""

from __future__ import annotations

import os

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability
from pallet.plugins.network.unwired import UnwiredNetwork


class NoneNetwork(UnwiredNetwork):
    description = "a network namespace with only lo"

    @classmethod
    def probe(cls, home=None, options=None):
        if not os.path.exists("/proc/self/ns/net"):
            return Availability.no("network namespaces are not supported by this kernel")
        return Availability.ok()


@hookimpl
def pallet_register_network_drivers(register):
    register("none", NoneNetwork)
