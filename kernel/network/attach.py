"""The calls the container lifecycle makes: connect a container's sandbox to its networks, disconnect it."""

from __future__ import annotations

from pathlib import Path

from pallet.kernel.errors import NotFound
from pallet.kernel.network.records import EndpointRecord, NetworkRecord
from pallet.kernel.network.resolv import host_nameservers
from pallet.kernel.network.store import NetworkStore


def endpoint_settings(record: NetworkRecord, endpoint: EndpointRecord, container) -> dict:
    """Docker's ``NetworkSettings.Networks[name]`` for one attachment."""
    ip, _, prefix = endpoint.address.partition("/")
    ip6, _, prefix6 = endpoint.address6.partition("/")
    return {
        "IPAMConfig": endpoint.ipam_config or None,
        "Links": endpoint.links or None, "Aliases": endpoint.aliases or None,
        "DriverOpts": endpoint.driver_opts or None, "MacAddress": endpoint.mac_address,
        "NetworkID": record.id, "EndpointID": endpoint.id, "Gateway": endpoint.gateway, "IPAddress": ip,
        "IPPrefixLen": int(prefix or 0), "IPv6Gateway": endpoint.gateway6, "GlobalIPv6Address": ip6,
        "GlobalIPv6PrefixLen": int(prefix6 or 0),
        "DNSNames": [container.name, container.id[:12], *endpoint.aliases] if not record.predefined else None,
    }


def connect(engine, record, sandbox_path, network: str | None = None, aliases=None, ip: str | None = None,
            mac: str | None = None, links=(), driver_opts: dict | None = None, ip6: str | None = None,
            link_local_ips=None) -> dict:
    """Attach container ``record``'s sandbox to its network; return what its files and record need.

    Defaults come from the record: ``network_mode``, ``host_config["NetworkAliases"]``,
    ``host_config["IPv4Address"]``, ``host_config["IPv6Address"]``, ``config["MacAddress"]``; published ports from
    ``record.port_bindings`` on the container's primary network.
    """
    host_config = getattr(record, "host_config", {}) or {}
    config = getattr(record, "config", {}) or {}
    primary = "bridge" if record.network_mode in ("", "default") else record.network_mode
    network = network or primary
    aliases = list(aliases if aliases is not None else host_config.get("NetworkAliases") or [])
    store = NetworkStore(engine)
    ports = record.port_bindings if network == primary else {}
    if ip6 is None:
        ip6 = host_config.get("IPv6Address", "") if network == primary else ""
    if driver_opts is None and network == primary:
        driver_opts = host_config.get("EndpointDriverOpts") or {}
    if link_local_ips is None:
        link_local_ips = host_config.get("LinkLocalIPs") or [] if network == primary else []
    net, endpoint = store.connect(record, sandbox_path, network, aliases=aliases,
                                  ip=ip if ip is not None else host_config.get("IPv4Address", ""),
                                  mac=mac if mac is not None else config.get("MacAddress", ""),
                                  port_bindings=ports, links=links, driver_opts=driver_opts,
                                  ip6=ip6, link_local_ips=link_local_ips)
    ip_address, _, prefix = endpoint.address.partition("/")
    if net.predefined:
        dns_servers, options = host_nameservers(), []
    else:
        dns_servers, options = ["127.0.0.11"], ["ndots:0"]
    networks = {net.name: endpoint_settings(net, endpoint, record)}
    if network == primary:
        networks.update(_reconnect_extra(store, record, sandbox_path, primary))
    return {
        # Docker's NetworkSettings fields, so ``inspect`` can show this dict as it is.
        "Networks": networks, "Ports": endpoint.ports,
        "IPAddress": ip_address, "IPPrefixLen": int(prefix), "Gateway": endpoint.gateway,
        "MacAddress": endpoint.mac_address, "GlobalIPv6Address": endpoint.address6.partition("/")[0],
        "GlobalIPv6PrefixLen": int(endpoint.address6.partition("/")[2] or 0), "IPv6Gateway": endpoint.gateway6,
        # What the sandbox's /etc files and ``pallet port`` need.
        "addresses": [endpoint.address], "extra_hosts": [], "ports": endpoint.ports,
        "dns_servers": dns_servers, "dns_search": [], "dns_options": options,
        "resolv_conf": "".join(f"nameserver {s}\n" for s in dns_servers)
                       + (f"options {' '.join(options)}\n" if options else ""),
    }


def _reconnect_extra(store: NetworkStore, record, sandbox_path, primary: str) -> dict:
    """On a restart, join again the networks added with ``network connect`` (as Docker does).

    They are listed in the record's previous ``network["Networks"]``; one removed meanwhile is skipped.
    """
    previous = (getattr(record, "network", None) or {}).get("Networks") or {}
    joined = {}
    for name, settings in previous.items():
        if name == primary:
            continue
        try:
            settings = settings or {}
            ipam = settings.get("IPAMConfig") or {}
            net, endpoint = store.connect(record, sandbox_path, name, aliases=settings.get("Aliases") or [],
                                          links=settings.get("Links") or [], driver_opts=settings.get("DriverOpts"),
                                          ip=ipam.get("IPv4Address") or "", ip6=ipam.get("IPv6Address") or "",
                                          mac=settings.get("MacAddress") or "",
                                          link_local_ips=ipam.get("LinkLocalIPs") or [])
        except NotFound:
            continue
        joined[net.name] = endpoint_settings(net, endpoint, record)
    return joined


def disconnect(engine, record, network: str | None = None) -> None:
    """Detach the container from every network (or ``network``). Idempotent, also after a crash."""
    NetworkStore(engine).disconnect(record.id, network)


def sandbox_of(engine, container: str):
    """The container's record and its sandbox path (``<run_root>/netns/<id>``), None when it is not running."""
    from pallet.kernel.containers import ContainerStore

    record = ContainerStore(engine).get(container)
    path = Path(engine.run_root) / "netns" / record.id
    return record, (str(path) if record.running and path.exists() else None)
