"""overlay network driver: multi-host VXLAN networks with state in etcd."""

from __future__ import annotations

import os

from kernel import hookimpl
from kernel.drivers import Availability, NetworkDriver


class OverlayNetwork(NetworkDriver):
    description = "VXLAN across hosts, cluster state in etcd"
    scope = "global"
    implemented = False

    @classmethod
    def probe(cls, home=None, options=None):
        options = options or {}
        if not os.path.exists("/proc/self/ns/net"):
            return Availability.no("network namespaces are not supported by this kernel")
        if not (options.get("cluster-store") or os.environ.get("PALLET_CLUSTER_STORE")):
            return Availability.no("no cluster store configured (--cluster-store etcd://HOST:2379)")
        return Availability.ok()


@hookimpl
def pallet_register_network_drivers(register):
    register("overlay", OverlayNetwork)
