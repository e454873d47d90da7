"""none network driver: a private network namespace with only the loopback interface up."""

from __future__ import annotations

import os

from kernel import hookimpl
from kernel.drivers import Availability, JoinInfo, NetworkDriver


class NoneNetwork(NetworkDriver):
    description = "a network namespace with only lo"
    implemented = True

    # Nothing to create or wire: the runtime (none) or the host (host) provides the namespace.
    def create_network(self, network_id, options, ipv4):
        return {}

    def delete_network(self, network_id, data):
        return None

    def create_endpoint(self, network_id, endpoint_id, data, info, options):
        return info

    def delete_endpoint(self, network_id, endpoint_id, data):
        return None

    def join(self, network_id, endpoint_id, data, sandbox_key, options):
        return JoinInfo(interface="")

    def leave(self, network_id, endpoint_id, data, sandbox_key):
        return None

    @classmethod
    def probe(cls, home=None, options=None):
        if not os.path.exists("/proc/self/ns/net"):
            return Availability.no("network namespaces are not supported by this kernel")
        return Availability.ok()


@hookimpl
def pallet_register_network_drivers(register):
    register("none", NoneNetwork)
