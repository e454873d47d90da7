"""bridge network driver: a Linux bridge, a veth pair per container, NAT through nftables."""

from __future__ import annotations

import os

from kernel import hookimpl
from kernel.drivers import Availability, NetworkDriver


class BridgeNetwork(NetworkDriver):
    description = "Linux bridge with veth pairs and NAT"
    implemented = False

    @classmethod
    def probe(cls, home=None, options=None):
        if not os.path.exists("/proc/self/ns/net"):
            return Availability.no("network namespaces are not supported by this kernel")
        if not os.path.exists("/proc/sys/net/ipv4/ip_forward"):
            return Availability.no("IPv4 forwarding is not available in this kernel")
        return Availability.ok()


@hookimpl
def pallet_register_network_drivers(register):
    register("bridge", BridgeNetwork)
