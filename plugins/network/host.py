"""host network driver: the container shares the host's network namespace."""

from __future__ import annotations

from kernel import hookimpl
from kernel.drivers import Availability, JoinInfo, NetworkDriver


class HostNetwork(NetworkDriver):
    description = "share the host's network namespace"
    needs_sandbox = False
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
        return Availability.ok()


@hookimpl
def pallet_register_network_drivers(register):
    register("host", HostNetwork)
