"""Network driver and IPAM contract: the libnetwork driver shape, in Python."""

from __future__ import annotations

from dataclasses import dataclass, field

from pallet.kernel.drivers.base import Driver


@dataclass
class EndpointInfo:
    """What a driver reports for an endpoint: the interface it will put in the sandbox."""

    address: str = ""          # CIDR, e.g. "10.88.0.5/16"
    gateway: str = ""
    mac_address: str = ""
    extra: dict = field(default_factory=dict)


@dataclass
class JoinInfo:
    """What a driver reports after joining a sandbox."""

    interface: str = "eth0"
    gateway: str = ""
    dns_servers: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


class NetworkDriver(Driver):
    """Create networks and connect containers' network namespaces (sandboxes) to them.

    ``home`` is ``<root>/network/<driver>``, the driver's private state; ``scope`` is
    ``local`` or ``global`` (multi-host) as ``pallet network ls`` shows it.
    """

    kind = "network"
    scope = "local"
    needs_sandbox = True  # False for "host": the container shares the host's netns

    def __init__(self, home, options: dict[str, str] | None = None):
        self.home = home
        self.options = dict(options or {})

    def create_network(self, network_id: str, options: dict, ipv4: list[dict]) -> dict:
        """Create the network. ``ipv4`` holds the pools IPAM gave (``{"pool", "gateway"}``).

        Return driver-specific data to store with the network (e.g. the bridge name).
        """
        raise NotImplementedError

    def delete_network(self, network_id: str, data: dict) -> None:
        """Remove everything ``create_network`` made. Missing pieces are not an error."""
        raise NotImplementedError

    def create_endpoint(self, network_id: str, endpoint_id: str, data: dict, info: EndpointInfo, options: dict) -> EndpointInfo:
        """Prepare an endpoint (e.g. a veth pair) with the address in ``info``; return the final info."""
        raise NotImplementedError

    def delete_endpoint(self, network_id: str, endpoint_id: str, data: dict) -> None:
        """Remove an endpoint's links and rules."""
        raise NotImplementedError

    def join(self, network_id: str, endpoint_id: str, data: dict, sandbox_key: str, options: dict) -> JoinInfo:
        """Move the endpoint into the network namespace at ``sandbox_key`` (a path) and configure it."""
        raise NotImplementedError

    def leave(self, network_id: str, endpoint_id: str, data: dict, sandbox_key: str) -> None:
        """Undo ``join``."""
        raise NotImplementedError


class IpamDriver(Driver):
    """Hand out address pools to networks and addresses to endpoints, never twice."""

    kind = "ipam"

    def __init__(self, home, options: dict[str, str] | None = None):
        self.home = home
        self.options = dict(options or {})

    def request_pool(self, pool: str = "", sub_pool: str = "", options: dict | None = None) -> tuple[str, str]:
        """Reserve ``pool`` (CIDR) or pick a free one; return ``(pool_id, cidr)``."""
        raise NotImplementedError

    def release_pool(self, pool_id: str) -> None:
        raise NotImplementedError

    def request_address(self, pool_id: str, address: str = "", options: dict | None = None) -> str:
        """Reserve ``address`` or the next free one in the pool; return it as CIDR."""
        raise NotImplementedError

    def release_address(self, pool_id: str, address: str) -> None:
        raise NotImplementedError
