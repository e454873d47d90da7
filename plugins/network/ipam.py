"""default IPAM: subnets from a configurable pool list, addresses allocated under a lock on disk.

IPv4 pools come from Docker's default-address-pools; an IPv6 pool asked for without a subnet
(``request_pool(options={"v6": "true"})``) is a /64 of a ULA /48 derived from this IPAM's home, as
Docker 27+ derives its default IPv6 pool from the host.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, IpamDriver
from pallet.kernel.errors import Conflict, NotFound, PalletError, UsageError
from pallet.kernel.fsutil import atomic_write_json, locked

# Docker's default-address-pools: 172.17-31.x/16, then 192.168.x/20.
DEFAULT_POOLS = "172.17.0.0/16:16,172.18.0.0/15:16,172.20.0.0/14:16,172.24.0.0/13:16,192.168.0.0/16:20"
GATEWAY_REQUEST = "com.docker.network.gateway"


def parse_pools(spec: str) -> list[tuple[ipaddress.IPv4Network, int]]:
    """``"BASE/LEN:SIZE,…"`` -> [(base network, size of each subnet)]."""
    result = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        base, _, size = part.partition(":")
        try:
            network = ipaddress.IPv4Network(base, strict=True)
            result.append((network, int(size or network.prefixlen)))
        except ValueError as exc:
            raise UsageError(f'invalid address pool "{part}": {exc}') from None
    return result


class DefaultIpam(IpamDriver):
    description = "local pools and addresses with on-disk state"

    @classmethod
    def probe(cls, home=None, options=None):
        return Availability.ok()

    @property
    def _state_file(self) -> Path:
        return Path(self.home) / "state.json"

    def _lock(self):
        return locked(Path(self.home) / "state.lock")

    def _load(self) -> dict:
        try:
            return json.loads(self._state_file.read_text())
        except FileNotFoundError:
            return {"pools": {}}

    def _save(self, state: dict) -> None:
        atomic_write_json(self._state_file, state)

    # --- pools --------------------------------------------------------------------------
    def request_pool(self, pool: str = "", sub_pool: str = "", options: dict | None = None) -> tuple[str, str]:
        with self._lock():
            state = self._load()
            taken = [ipaddress.ip_network(cidr) for cidr in state["pools"]]
            if pool:
                network = _network(pool, "subnet")
                if any(network.version == other.version and network.overlaps(other) for other in taken):
                    raise Conflict(f"Pool overlaps with other one on this address space: {network}")
            elif (options or {}).get("v6") == "true":
                network = self._free_pool6(taken)
            else:
                network = self._free_pool([t for t in taken if t.version == 4])
            if sub_pool:
                sub = _network(sub_pool, "ip-range")
                if sub.version != network.version or not sub.subnet_of(network):
                    raise UsageError(f"ip-range {sub} is not inside subnet {network}")
            state["pools"][str(network)] = {"range": sub_pool, "allocated": []}
            self._save(state)
            return str(network), str(network)

    def _free_pool(self, taken) -> ipaddress.IPv4Network:
        from pallet.plugins.network.netlink import host_routes

        busy = list(taken) + [ipaddress.IPv4Network(f"{n}/{p}", strict=False) for n, p in host_routes()]
        for base, size in parse_pools(self.options.get("pools") or DEFAULT_POOLS):
            for candidate in base.subnets(new_prefix=size):
                if not any(candidate.overlaps(other) for other in busy):
                    return candidate
        raise PalletError("could not find an available, non-overlapping IPv4 address pool among the defaults "
                          "to assign to the network")

    def _free_pool6(self, taken) -> ipaddress.IPv6Network:
        import hashlib

        seed = hashlib.sha256(str(Path(self.home).resolve()).encode()).digest()
        base = ipaddress.IPv6Network((b"\xfd" + seed[:5] + b"\x00" * 10, 48))
        busy = [t for t in taken if t.version == 6]
        for candidate in base.subnets(new_prefix=64):
            if not any(candidate.overlaps(other) for other in busy):
                return candidate
        raise PalletError("could not find an available IPv6 /64 in this host's ULA pool")  # pragma: no cover

    def release_pool(self, pool_id: str) -> None:
        with self._lock():
            state = self._load()
            if state["pools"].pop(pool_id, None) is not None:
                self._save(state)

    def pools(self) -> dict:
        with self._lock():
            return self._load()["pools"]

    # --- addresses ----------------------------------------------------------------------
    def request_address(self, pool_id: str, address: str = "", options: dict | None = None) -> str:
        options = options or {}
        network = ipaddress.ip_network(pool_id)
        with self._lock():
            state = self._load()
            pool = state["pools"].get(pool_id)
            if pool is None:
                raise NotFound(f"address pool {pool_id} is not known to IPAM")
            allocated = set(pool["allocated"])
            if address:
                try:
                    ip = ipaddress.ip_address(address.split("/")[0])
                except ValueError:
                    raise UsageError(f'invalid IP address: "{address}"') from None
                if ip not in network or ip in (network.network_address, network.broadcast_address):
                    raise UsageError(f"address {ip} is not a usable address of {network}")
                if str(ip) in allocated:
                    raise Conflict(f"Address already in use: {ip}")
            else:
                ip = self._next_free(network, pool, allocated, options.get("RequestAddressType") == GATEWAY_REQUEST)
            pool["allocated"].append(str(ip))
            self._save(state)
            return f"{ip}/{network.prefixlen}"

    @staticmethod
    def _next_free(network, pool, allocated, gateway: bool):
        # The gateway takes the first address of the subnet, containers come from --ip-range if given.
        scope = network if gateway or not pool["range"] else ipaddress.ip_network(pool["range"])
        for ip in scope.hosts():
            if str(ip) not in allocated:
                return ip
        raise PalletError(f"no available IPv{network.version} addresses on this network's address pool {network}")

    def release_address(self, pool_id: str, address: str) -> None:
        ip = address.split("/")[0]
        with self._lock():
            state = self._load()
            pool = state["pools"].get(pool_id)
            if pool and ip in pool["allocated"]:
                pool["allocated"].remove(ip)
                self._save(state)


def _network(text: str, what: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise UsageError(f'invalid {what} "{text}": {exc}') from None


@hookimpl
def pallet_register_ipam_drivers(register):
    register("default", DefaultIpam)
