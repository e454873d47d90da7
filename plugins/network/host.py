"""host network driver: the container shares the host's network namespace."""

from __future__ import annotations

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability
from pallet.plugins.network.unwired import UnwiredNetwork


class HostNetwork(UnwiredNetwork):
    description = "share the host's network namespace"
    needs_sandbox = False

    @classmethod
    def probe(cls, home=None, options=None):
        return Availability.ok()


@hookimpl
def pallet_register_network_drivers(register):
    register("host", HostNetwork)
