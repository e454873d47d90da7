"""macvlan: containers get an interface on a host parent link, as Docker's macvlan driver (bridge mode).

``pallet network create -d macvlan -o parent=IFACE --subnet CIDR NAME``. Uses pyroute2.
"""

from __future__ import annotations

import ipaddress

from pallet import hookimpl
from pallet.drivers import Availability, EndpointInfo, JoinInfo, NetworkDriver
from pallet.errors import PalletError, UsageError

PALLET_PLUGIN_API = ">=1.0,<2"  # the plugin contract this module was written against


class MacvlanNetwork(NetworkDriver):
    description = "macvlan sub-interfaces of a host link (vendor example)"

    @classmethod
    def probe(cls, home=None, options=None):
        try:
            import pyroute2  # noqa: F401
        except ImportError:
            return Availability.no("pyroute2 is not installed")
        return Availability.ok()

    def create_network(self, network_id, options, ipv4):
        from pyroute2 import IPRoute

        parent = options.get("parent")
        if not parent:
            raise UsageError("macvlan networks need a parent link: -o parent=IFACE")
        with IPRoute() as ipr:
            if not ipr.link_lookup(ifname=parent):
                raise PalletError(f'macvlan: parent link "{parent}" does not exist')
        return {"parent": parent, "mode": options.get("macvlan_mode", "bridge")}

    def delete_network(self, network_id, data):
        pass  # nothing on the host belongs to the network itself

    @staticmethod
    def _link_name(endpoint_id: str) -> str:
        return f"mv{endpoint_id[:12]}"

    def create_endpoint(self, network_id, endpoint_id, data, info, options):
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            parent_index = ipr.link_lookup(ifname=data["parent"])[0]
            kwargs = {"ifname": self._link_name(endpoint_id), "kind": "macvlan", "link": parent_index,
                      "macvlan_mode": data.get("mode", "bridge")}
            if info.mac_address:
                kwargs["address"] = info.mac_address
            ipr.link("add", **kwargs)
            index = ipr.link_lookup(ifname=kwargs["ifname"])[0]
            # The alias survives the rename to eth0 inside the sandbox, so leave() can find the link.
            ipr.link("set", index=index, ifalias=f"pallet-endpoint:{endpoint_id}")
            info.mac_address = ipr.get_links(index)[0].get_attr("IFLA_ADDRESS")
        return info

    def delete_endpoint(self, network_id, endpoint_id, data):
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=self._link_name(endpoint_id)):
                ipr.link("del", index=index)

    def join(self, network_id, endpoint_id, data, sandbox_key, options):
        from pyroute2 import IPRoute, NetNS

        address = options.get("address", "")
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=self._link_name(endpoint_id))[0]
            ipr.link("set", index=index, net_ns_fd=sandbox_key)
        with NetNS(sandbox_key) as ns:
            index = ns.link_lookup(ifname=self._link_name(endpoint_id))[0]
            ns.link("set", index=index, ifname=options.get("interface", "eth0"))
            if address:
                iface = ipaddress.ip_interface(address)
                ns.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
            ns.link("set", index=index, state="up")
            lo = ns.link_lookup(ifname="lo")[0]
            ns.link("set", index=lo, state="up")
            gateway = options.get("gateway", "")
            if gateway:
                ns.route("add", dst="0.0.0.0/0", gateway=gateway)
        return JoinInfo(interface=options.get("interface", "eth0"), gateway=options.get("gateway", ""))

    def leave(self, network_id, endpoint_id, data, sandbox_key):
        from pyroute2 import NetNS

        try:
            with NetNS(sandbox_key) as ns:
                for link in ns.get_links():
                    if link.get_attr("IFLA_IFALIAS") == f"pallet-endpoint:{endpoint_id}":
                        ns.link("del", index=link["index"])
        except OSError:
            pass  # the sandbox is already gone, and its links with it


@hookimpl
def pallet_register_network_drivers(register):
    register("macvlan", MacvlanNetwork)
