"""The shared base of the none and host drivers: networks with nothing to create or wire.

The runtime (none: a fresh namespace with lo up) or the host (host) provides the namespace, so
every libnetwork step is a no-op. Not an entry point itself.
"""

from __future__ import annotations

from pallet.kernel.drivers import JoinInfo, NetworkDriver


class UnwiredNetwork(NetworkDriver):

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
