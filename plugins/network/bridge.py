"""bridge network driver: a Linux bridge, a veth pair per container, NAT and isolation through nftables."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, EndpointInfo, JoinInfo, NetworkDriver
from pallet.kernel.errors import PalletError, UsageError
from pallet.kernel.fsutil import atomic_write_json

MTU_OPTIONS = ("com.docker.network.driver.mtu", "mtu")
NAME_OPTION = "com.docker.network.bridge.name"
REGISTRY = Path("/run/pallet-network")


class BridgeNetwork(NetworkDriver):
    """State lives in ``<home>/<network id>.json``; the root's nft table is rebuilt from all of it.

    Callers (``pallet.kernel.network.store.NetworkStore``) hold the store lock around every method, so the
    state files and the table change together.
    """

    description = "Linux bridge with veth pairs and NAT"
    ipv6 = True
    link_local = True

    @classmethod
    def probe(cls, home=None, options=None):
        if not os.path.exists("/proc/self/ns/net"):
            return Availability.no("network namespaces are not supported by this kernel")
        if not os.path.exists("/proc/sys/net/ipv4/ip_forward"):
            return Availability.no("IPv4 forwarding is not available in this kernel")
        return Availability.ok()

    # --- state ------------------------------------------------------------------------------
    def _path(self, network_id: str) -> Path:
        return Path(self.home) / f"{network_id}.json"

    def _load(self, network_id: str) -> dict:
        try:
            return json.loads(self._path(network_id).read_text())
        except FileNotFoundError:
            raise PalletError(f"bridge network {network_id[:12]} has no driver state") from None

    def _save(self, network_id: str, state: dict) -> None:
        atomic_write_json(self._path(network_id), state)

    def _all(self) -> list[dict]:
        home = Path(self.home)
        if not home.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(home.glob("*.json"))]

    @property
    def root(self) -> Path:
        return Path(self.home).parent.parent

    # --- networks ---------------------------------------------------------------------------
    def create_network(self, network_id: str, options: dict, ipv4: list[dict], ipv6: list[dict] | None = None) -> dict:
        from pallet.plugins.network import netlink

        if len(ipv4) != 1:
            raise UsageError("bridge networks take exactly one IPv4 subnet")
        subnet = ipaddress.IPv4Network(ipv4[0]["pool"])
        gateway = ipv4[0]["gateway"].split("/")[0]
        mtu = _mtu(options)
        bridge = options.get(NAME_OPTION) or f"br-{network_id[:12]}"
        if len(bridge) > 15:
            raise UsageError(f'bridge name "{bridge}" is longer than 15 characters')
        collect_orphans()
        state = {"id": network_id, "bridge": bridge, "subnet": str(subnet), "gateway": gateway, "mtu": mtu,
                 "internal": options.get("internal") == "true", "endpoints": {}}
        if ipv6:
            state["subnet6"] = str(ipaddress.IPv6Network(ipv6[0]["pool"]))
            state["gateway6"] = ipv6[0]["gateway"].split("/")[0]
        self._save(network_id, state)  # first, so a crash below leaves something delete_network can find
        try:
            netlink.ensure_bridge(bridge, gateway, subnet.prefixlen, mtu)
            # Host-originated traffic to 127.0.0.1:PORT is DNAT-ed out of the bridge (see docs/network.md).
            netlink.sysctl(f"net.ipv4.conf.{bridge}.route_localnet", "1")
            if not state["internal"]:
                netlink.sysctl("net.ipv4.ip_forward", "1")
            if ipv6:
                netlink.add_ipv6(bridge, state["gateway6"], ipaddress.IPv6Network(state["subnet6"]).prefixlen)
                if not state["internal"]:
                    netlink.sysctl("net.ipv6.conf.all.forwarding", "1")
            self._apply_rules()
        except BaseException:
            self.delete_network(network_id, state)
            raise
        return {"bridge": bridge, "mtu": mtu}

    def delete_network(self, network_id: str, data: dict) -> None:
        from pallet.plugins.network import netlink

        path = self._path(network_id)
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            state = {"bridge": data.get("bridge"), "endpoints": {}}
        for endpoint in state.get("endpoints", {}).values():
            netlink.delete_link(endpoint["veth"])
        path.unlink(missing_ok=True)
        if state.get("bridge"):
            netlink.delete_link(state["bridge"])
        self._apply_rules()

    # --- endpoints --------------------------------------------------------------------------
    def create_endpoint(self, network_id, endpoint_id, data, info: EndpointInfo, options) -> EndpointInfo:
        from pallet.kernel.network import ports
        from pallet.plugins.network import nft

        state = self._load(network_id)
        ip = info.address.split("/")[0]
        mac = options.get("mac_address") or mac_from_ip(ip)
        endpoint = {"veth": f"pv{endpoint_id[:11]}", "address": info.address,
                    "mac": mac, "ports": [], **({"address6": info.address6} if info.address6 else {})}
        state["endpoints"][endpoint_id] = endpoint
        self._save(network_id, state)
        try:
            # The veth pair is made by join, straight into the sandbox.
            if options.get("port_bindings"):
                # Host-wide lock: another root may be publishing the same port at this moment.
                with ports.host_lock():
                    endpoint["ports"] = ports.allocate(options["port_bindings"],
                                                       self._ports_in_use() | nft.published_ports())
                    self._save(network_id, state)
                    self._apply_rules()
        except BaseException:
            self.delete_endpoint(network_id, endpoint_id, data)
            raise
        return EndpointInfo(address=info.address, gateway=state["gateway"], mac_address=mac,
                            extra={"ports": ports.as_bindings(endpoint["ports"])})

    def delete_endpoint(self, network_id, endpoint_id, data) -> None:
        from pallet.plugins.network import netlink

        try:
            state = self._load(network_id)
        except PalletError:
            return
        endpoint = state["endpoints"].pop(endpoint_id, None)
        if endpoint is None:
            return
        netlink.delete_link(endpoint["veth"])
        self._save(network_id, state)
        if endpoint["ports"]:   # the table names only published ports' endpoints (10-20 ms of nft otherwise)
            self._apply_rules()

    def join(self, network_id, endpoint_id, data, sandbox_key, options) -> JoinInfo:
        from pallet.plugins.network import netlink

        state = self._load(network_id)
        endpoint = state["endpoints"][endpoint_id]
        network = ipaddress.IPv4Network(state["subnet"])
        ifname, routed = netlink.create_veth_into(
            endpoint["veth"], state["bridge"], sandbox_key, endpoint["mac"], endpoint["address"].split("/")[0],
            network.prefixlen, None if state["internal"] else state["gateway"], state["mtu"],
            options.get("interface_name") or None)
        routed6 = False
        if endpoint.get("address6"):
            address6, _sep, prefix6 = endpoint["address6"].partition("/")
            routed6 = netlink.add_ipv6(ifname, address6, int(prefix6), netns=sandbox_key,
                                       gateway=None if state["internal"] else state["gateway6"])
        for address in options.get("link_local_ips") or []:
            netlink.add_address(ifname, address, 16 if ":" not in address else 64, netns=sandbox_key)
        return JoinInfo(interface=ifname, gateway=state["gateway"] if routed else "",
                        gateway6=state.get("gateway6", "") if routed6 else "")

    def leave(self, network_id, endpoint_id, data, sandbox_key) -> None:
        from pallet.plugins.network import netlink

        try:
            endpoint = self._load(network_id)["endpoints"].get(endpoint_id)
        except PalletError:
            return
        if endpoint:
            # Deleting either end removes the pair; the host end is enough and needs no sandbox.
            netlink.delete_link(endpoint["veth"])

    # --- nftables ---------------------------------------------------------------------------
    def _ports_in_use(self) -> set:
        return {(p["proto"], p["host_ip"], p["host_port"])
                for net in self._all() for ep in net["endpoints"].values() for p in ep["ports"]}

    def _apply_rules(self) -> None:
        from pallet.plugins.network import nft

        nets = self._all()
        table = nft.table_name(self.root)
        record = REGISTRY / f"{table}.json"
        try:
            previous = json.loads(record.read_text())
        except (OSError, ValueError):
            previous = {}
        nft.replace_table(table, render_rules(nets) if nets else None)
        has6 = any(n.get("subnet6") for n in nets)
        if has6:
            nft.replace_table(table, render_rules6(nets), "ip6")
        elif previous.get("ip6") and nft.table_exists(table, "ip6"):  # the registry says whether one was made
            nft.replace_table(table, None, "ip6")
        if nets:
            entry = {"root": str(self.root), "bridges": [n["bridge"] for n in nets], **({"ip6": True} if has6 else {})}
            if previous != entry:
                atomic_write_json(record, entry)
        else:
            record.unlink(missing_ok=True)


def collect_orphans() -> list[str]:
    """Remove tables and bridges of roots that were deleted while their networks existed (test roots).

    Links and nft tables outlive a root directory; each root registers what it made in REGISTRY
    (on tmpfs, like the links themselves), so another pallet can clean up after it. Returns the
    names of the tables removed.
    """
    from pallet.plugins.network import netlink, nft

    removed = []
    for record in sorted(REGISTRY.glob("*.json")):
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if (Path(data["root"]) / "network" / "bridge").is_dir():
            continue
        for bridge in data.get("bridges", []):
            netlink.delete_link(bridge)
        for family in ("ip", "ip6"):
            if nft.table_exists(record.stem, family):
                nft.replace_table(record.stem, None, family)
        record.unlink(missing_ok=True)
        removed.append(record.stem)
    return removed


def render_rules(nets: list[dict]) -> str:
    """The root's whole table: masquerade, isolation between bridges, internal networks, DNAT for ports."""
    from pallet.plugins.network.nft import port_comment

    post, ports, forward, local_guard = [], [], [], []
    bridges = [n["bridge"] for n in nets]
    for net in nets:
        br = net["bridge"]
        local_guard.append(f'iifname "{br}" ip daddr 127.0.0.0/8 ct state new drop')
        # Host connections to 127.0.0.1:PORT leave through the bridge: give them the gateway's address.
        post.append(f'oifname "{br}" ip saddr 127.0.0.0/8 masquerade')
        if net["internal"]:
            forward.append(f'iifname "{br}" oifname != "{br}" drop')
            forward.append(f'oifname "{br}" iifname != "{br}" drop')
        else:
            post.append(f'ip saddr {net["subnet"]} oifname != "{br}" masquerade')
        for other in bridges:
            if other != br:
                forward.append(f'iifname "{br}" oifname "{other}" drop')
        for endpoint in net["endpoints"].values():
            ip = endpoint["address"].split("/")[0]
            for p in endpoint["ports"]:
                match = f'ip daddr {p["host_ip"]} ' if p["host_ip"] not in ("", "0.0.0.0") else ""
                ports.append(f'{match}{p["proto"]} dport {p["host_port"]} dnat to {ip}:{p["container_port"]} '
                             f'comment "{port_comment(p["proto"], p["host_ip"], p["host_port"])}"')
    return "".join([
        _chain("ports", [], ports),
        _chain("prerouting", ["type nat hook prerouting priority dstnat; policy accept;"],
               ["fib daddr type local jump ports"]),
        _chain("output", ["type nat hook output priority -100; policy accept;"],
               ["fib daddr type local jump ports"]),
        _chain("postrouting", ["type nat hook postrouting priority srcnat; policy accept;"], post),
        _chain("forward", ["type filter hook forward priority filter; policy accept;"], forward),
        _chain("input", ["type filter hook input priority filter; policy accept;"], local_guard),
    ])


def render_rules6(nets: list[dict]) -> str:
    """The root's ``ip6`` table: NAT66 out of IPv6 networks (as Docker 28 does by default), isolation
    between bridges and internal networks, for IPv6 packets (the ``ip`` table sees IPv4 only)."""
    post, forward = [], []
    bridges = [n["bridge"] for n in nets]
    for net in nets:
        br = net["bridge"]
        if net["internal"]:
            forward.append(f'iifname "{br}" oifname != "{br}" drop')
            forward.append(f'oifname "{br}" iifname != "{br}" drop')
        elif net.get("subnet6"):
            post.append(f'ip6 saddr {net["subnet6"]} oifname != "{br}" masquerade')
        forward += [f'iifname "{br}" oifname "{other}" drop' for other in bridges if other != br]
    return "".join([
        _chain("postrouting", ["type nat hook postrouting priority srcnat; policy accept;"], post),
        _chain("forward", ["type filter hook forward priority filter; policy accept;"], forward),
    ])


def _chain(name: str, head: list[str], rules: list[str]) -> str:
    lines = "".join(f"    {line}\n" for line in head + rules)
    return f"  chain {name} {{\n{lines}  }}\n"


def mac_from_ip(ip: str) -> str:
    """Docker's scheme: 02:42 followed by the four bytes of the IPv4 address."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


def _mtu(options: dict) -> int | None:
    for key in MTU_OPTIONS:
        if options.get(key):
            try:
                mtu = int(options[key])
            except ValueError:
                raise UsageError(f'invalid MTU "{options[key]}"') from None
            if not 68 <= mtu <= 65535:
                raise UsageError(f"MTU {mtu} is out of range (68-65535)")
            return mtu
    return None


@hookimpl
def pallet_register_network_drivers(register):
    register("bridge", BridgeNetwork)
