"""Service discovery and load balancing on this node: virtual IPs, service names in the embedded DNS,
nftables balancing over healthy tasks, and published ports on every node (the routing mesh).

The contract the agent relies on (see ``pallet.kernel.cluster`` for the records):

- ``allocate_vips(engine, etcd, service) -> list[dict]``: the ``Endpoint.VirtualIPs`` for a new
  service (one address per overlay network it is on, from that network's pool), called by the
  manager that creates it; ``[]`` with ``EndpointSpec.Mode == "dnsrr"``.
- ``release_vips(engine, etcd, service) -> None``: gives them back when the service is removed.
- ``sync(engine, etcd, services, tasks) -> None``: makes this node's rules, DNS records and
  published-port listeners match ``services`` and ``tasks`` (lists of the records, all of the
  cluster); idempotent, called by the agent after every change it sees.
- ``teardown(engine) -> None``: removes everything ``sync`` made on this node (leaving the cluster).

VIPs are ordinary addresses of the network's IPAM (the ``cluster`` IPAM's etcd keys), so a task
can never be given a service's address. What ``sync`` makes lives in
:mod:`pallet.kernel.network.services` (names and VIP rules per network, which the network store
applies to every sandbox joining it) and :mod:`pallet.kernel.cluster.ingress` (the routing mesh).
"""

from __future__ import annotations

import ipaddress

from pallet.kernel.cluster import PREFIX
from pallet.kernel.errors import NotFound

HIDDEN_HEALTH = ("starting", "unhealthy")


def _store(engine, etcd=None):
    from pallet.kernel.network.store import NetworkStore

    store = NetworkStore(engine)
    if etcd is not None and not store.cluster_store:
        engine.cluster_store = etcd.base.replace("http://", "etcd://", 1)
    return store


def endpoint_mode(service: dict) -> str:
    return ((service.get("Spec") or {}).get("EndpointSpec") or {}).get("Mode") or "vip"


def network_attachments(service: dict) -> list[dict]:
    """The service's ``[{"Target", "Aliases"}]`` (``TaskTemplate.Networks``, or the older ``Spec.Networks``)."""
    spec = service.get("Spec") or {}
    return list((spec.get("TaskTemplate") or {}).get("Networks") or spec.get("Networks") or [])


def _overlays(store, service: dict) -> list[tuple]:
    """(network record, aliases) for each cluster-wide network of the service, in the order given."""
    found = []
    for attachment in network_attachments(service):
        record = store.get(attachment["Target"])
        if record.scope == "global" and record.pools:
            found.append((record, [a.lower() for a in attachment.get("Aliases") or []]))
    return found


def allocate_vips(engine, etcd, service: dict) -> list[dict]:
    if endpoint_mode(service) == "dnsrr":
        return []
    store = _store(engine, etcd)
    vips = []
    try:
        for record, _aliases in _overlays(store, service):
            address = store.ipam(record.ipam_driver).request_address(record.pools[0])
            vips.append({"NetworkID": record.id, "Addr": address})
    except BaseException:
        release_vips(engine, etcd, {"Endpoint": {"VirtualIPs": vips}})
        raise
    return vips


def release_vips(engine, etcd, service: dict) -> None:
    store = _store(engine, etcd)
    for vip in (service.get("Endpoint") or {}).get("VirtualIPs") or []:
        try:
            record = store.get(vip["NetworkID"])
        except NotFound:
            continue  # the network went away, and its pool with every address in it
        if record.pools:
            store.ipam(record.ipam_driver).release_address(record.pools[0], vip["Addr"])


def serving(task: dict, alive: set[str]) -> bool:
    """Whether a task takes traffic: meant to run, running, not (yet) unhealthy, on a node that is up."""
    status = task.get("Status") or {}
    return (task.get("DesiredState", "running") == "running" and status.get("State") == "running"
            and (status.get("Health") or "") not in HIDDEN_HEALTH
            and (not task.get("NodeID") or task["NodeID"] in alive))


def task_addresses(task: dict) -> dict[str, str]:
    """{network id: ip} of a task's attachments."""
    found = {}
    for attachment in task.get("NetworksAttachments") or []:
        network_id = (attachment.get("Network") or {}).get("ID")
        for address in attachment.get("Addresses") or []:
            if network_id:
                found[network_id] = address.split("/")[0]
    return found


def plan(store, services: list[dict], tasks: list[dict], alive: set[str]) -> tuple[dict, dict, list]:
    """What this node should have: DNS names and VIP backends per network, and the published ports.

    Returns ``({network id: {name: [ip]}}, {network id: {vip: [ip]}}, [port dicts for ingress]``).
    """
    backends: dict[str, dict[str, set]] = {}
    for task in tasks:
        if serving(task, alive):
            for network_id, ip in task_addresses(task).items():
                backends.setdefault(task.get("ServiceID", ""), {}).setdefault(network_id, set()).add(ip)
    names: dict[str, dict] = {}
    vips: dict[str, dict] = {}
    ports = []
    for service in services:
        spec = service.get("Spec") or {}
        name = (spec.get("Name") or "").lower()
        dnsrr = endpoint_mode(service) == "dnsrr"
        virtual = {v["NetworkID"]: v["Addr"].split("/")[0] for v in (service.get("Endpoint") or {}).get("VirtualIPs") or []}
        try:
            overlays = _overlays(store, service)
        except NotFound:
            continue  # its network is not known in the cluster (yet): nothing to answer for it
        for record, aliases in overlays:
            ips = sorted(backends.get(service.get("ID"), {}).get(record.id, ()), key=ipaddress.IPv4Address)
            table = names.setdefault(record.id, {})
            table[f"tasks.{name}"] = ips
            vip = None if dnsrr else virtual.get(record.id)
            for each in (name, *aliases):
                table[each] = [vip] if vip else ips
            if vip:
                vips.setdefault(record.id, {})[vip] = ips
        if overlays:
            from pallet.kernel.cluster.ingress import published_ports

            first = overlays[0][0].id
            all_ips = sorted(backends.get(service.get("ID"), {}).get(first, ()), key=ipaddress.IPv4Address)
            ports += [dict(port, network_id=first, backends=all_ips) for port in published_ports(service)]
    return names, vips, ports


def sync(engine, etcd, services: list[dict], tasks: list[dict]) -> None:
    from pallet.kernel.cluster import ingress
    from pallet.kernel.network import services as records

    store = _store(engine, etcd)
    alive = {key.rsplit("/", 1)[1] for key in etcd.range(f"{PREFIX}alive/")[0]}
    names, vips, ports = plan(store, services, tasks, alive)
    local = {r.id: r for r in store.read_all()}
    with store.lock():
        for network_id in sorted(set(names) | set(records.published(store.dir))):
            sandboxes = [ep.sandbox for ep in store.endpoints(network_id)]
            record = local.get(network_id)
            # Also before the network is built here: the first container to join finds its names.
            if network_id in names and record is not None:
                records.publish(store.dir, network_id, names[network_id], vips.get(network_id, {}), sandboxes)
            else:
                records.withdraw(store.dir, network_id, sandboxes)
    ingress.sync(store, ports)


def teardown(engine) -> None:
    from pallet.kernel.cluster import ingress
    from pallet.kernel.network import services as records

    store = _store(engine)
    with store.lock():
        for network_id in records.published(store.dir):
            records.withdraw(store.dir, network_id, [ep.sandbox for ep in store.endpoints(network_id)])
    ingress.sync(store, [])


