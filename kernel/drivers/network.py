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
    address6: str = ""         # CIDR on an IPv6 network (``ipv6`` drivers), e.g. "fd12:3456:789a::2/64"
    gateway6: str = ""


@dataclass
class JoinInfo:
    """What a driver reports after joining a sandbox."""

    interface: str = "eth0"
    gateway: str = ""
    dns_servers: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    gateway6: str = ""


class NetworkDriver(Driver):
    """Create networks and connect containers' network namespaces (sandboxes) to them.

    The context's ``home`` is ``<root>/network/<driver>``, the driver's private state. Its
    ``options`` are the engine's ``[network]`` settings the core passes on, each only when set:

    * ``cluster-store``: ``etcd://HOST:PORT`` (``--cluster-store``, ``PALLET_CLUSTER_STORE`` or
      ``[network] cluster_store``), the store a ``global`` driver shares state through
      (the client is :class:`pallet.kernel.network.etcd.Etcd`);
    * ``advertise-address``: the address other hosts reach this one at (``advertise_address``);
    * ``lease-ttl``: seconds a host's address leases live without renewal (``overlay_lease_ttl``).

    The engine's ``run_root`` is the context's; sandboxes live under ``<run_root>/netns``.
    Callers hold the network store's lock (``<root>/networks/.lock``) around every method, so a
    driver needs no lock of its own within one root; what it shares between roots (host
    routes, ports) it guards with :func:`pallet.kernel.network.ports.host_lock`.
    """

    kind = "network"
    # ``local`` or ``global`` (multi-host) as ``pallet network ls`` shows it. A ``global``
    # network is published in the cluster store and gets the ``cluster`` IPAM by default.
    scope = "local"
    # False for a driver whose containers share the host's network namespace ("host"): the core
    # makes no sandbox, and only one network of that driver may exist (the predefined one).
    needs_sandbox = True
    # True for a driver that assigns addresses itself (CNI plugins run their own IPAM, e.g.
    # host-local): the core reserves no pool or address, ``create_network`` gets ``ipv4=[]``, and
    # ``join`` reports the address it configured in ``JoinInfo.extra["address"]`` (CIDR) and
    # ``extra["mac_address"]``.
    own_ipam = False
    # True for a driver whose networks may also be defined outside pallet (CNI conflists in
    # /etc/cni/net.d): ``network ls`` asks it for them through :meth:`discover`.
    discovers = False
    # True for a driver that takes IPv6 pools (Docker's ``--ipv6``): ``create_network`` is then called
    # with ``ipv6=[{"pool", "gateway"}]``, the endpoint's ``EndpointInfo.address6``/``gateway6`` are set,
    # and ``join`` gets ``address6`` and ``gateway6``. A network with IPv6 on another driver is refused.
    ipv6 = False
    # True for a driver whose ``join`` adds ``options["link_local_ips"]`` (Docker's ``--link-local-ip``)
    # to the container's interface; others refuse the flag.
    link_local = False

    def create_network(self, network_id: str, options: dict, ipv4: list[dict], ipv6: list[dict] | None = None) -> dict:
        """Create the network. ``ipv4`` holds the pools IPAM gave (``{"pool", "gateway"}``), ``ipv6`` the
        IPv6 ones (only for a driver with ``ipv6 = True``, on a network created with ``--ipv6``).

        ``options`` are the user's ``-o KEY=VALUE`` plus ``internal`` (``"true"``/``"false"``,
        ``--internal``: no route out). Return driver-specific data to store with the network (e.g. the bridge name).
        """
        raise NotImplementedError

    def delete_network(self, network_id: str, data: dict) -> None:
        """Remove everything ``create_network`` made. Missing pieces are not an error."""
        raise NotImplementedError

    def create_endpoint(self, network_id: str, endpoint_id: str, data: dict, info: EndpointInfo, options: dict) -> EndpointInfo:
        """Prepare an endpoint (e.g. a veth pair) with the address in ``info``; return the final info.

        ``options``: ``mac_address`` ("" to choose one), ``port_bindings`` (Docker's
        ``PortBindings`` dict, for the container's primary network only), ``container_id``,
        ``container_name`` and ``aliases`` (names the embedded DNS answers for). Put published
        ports, as Docker's ``Ports`` dict, in the returned info's ``extra["ports"]``.
        """
        raise NotImplementedError

    def delete_endpoint(self, network_id: str, endpoint_id: str, data: dict) -> None:
        """Remove an endpoint's links and rules."""
        raise NotImplementedError

    def join(self, network_id: str, endpoint_id: str, data: dict, sandbox_key: str, options: dict) -> JoinInfo:
        """Move the endpoint into the network namespace at ``sandbox_key`` (a path) and configure it.

        ``options``: ``address`` (CIDR), ``mac_address``, ``interface`` (``eth0``, ``eth1`` … in
        the order the container joined its networks), ``gateway`` (the default route, set on
        the first network only, "" otherwise), ``address6`` and ``gateway6`` (IPv6, "" for none),
        ``link_local_ips`` (extra addresses, for a ``link_local`` driver) and ``interface_name`` (the name the user asked for
        with Docker's ``com.docker.network.endpoint.ifname`` driver option, "" for none; a driver
        that moves a link into the sandbox gives it that name).
        """
        raise NotImplementedError

    def leave(self, network_id: str, endpoint_id: str, data: dict, sandbox_key: str) -> None:
        """Undo ``join``."""
        raise NotImplementedError

    def discover(self) -> list[dict]:
        """Networks defined outside pallet, as ``{"name", "options"}``; the core records each new one.

        Such a record is built (``create_network``) at its first container, and is dropped when
        the driver stops reporting it and no container uses it. Only asked when ``discovers`` is set.
        """
        return []

    def release_cluster(self, network_id: str, options: dict) -> None:
        """The last host left global network ``network_id``: free what the driver keeps in the cluster store.

        Called for ``global`` drivers only, after this host's ``delete_network``, with the
        network's options (e.g. the VXLAN id it reserved). The default keeps nothing.
        """


class IpamDriver(Driver):
    """Hand out address pools to networks and addresses to endpoints, never twice.

    The context's ``home`` is ``<root>/network/ipam-<name>``. Its ``options``: ``pools`` (the
    ``[network] default_address_pools`` text, ``CIDR:SIZE,…``, or empty for the driver's
    defaults) and ``cluster-store`` when one is configured (see :class:`NetworkDriver`).
    """

    kind = "ipam"

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
