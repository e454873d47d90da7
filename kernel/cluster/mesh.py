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
"""

from __future__ import annotations


def allocate_vips(engine, etcd, service: dict) -> list[dict]:
    return []


def release_vips(engine, etcd, service: dict) -> None:
    return None


def sync(engine, etcd, services: list[dict], tasks: list[dict]) -> None:
    return None


def teardown(engine) -> None:
    return None
