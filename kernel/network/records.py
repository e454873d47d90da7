"""The records of networks and endpoints kept under ``<root>/networks/`` (one JSON file each)."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class NetworkRecord:
    id: str
    name: str
    driver: str
    scope: str = "local"
    created: str = ""
    internal: bool = False
    attachable: bool = True
    labels: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    ipam_driver: str = "default"
    ipam_options: dict = field(default_factory=dict)
    ipam_config: list = field(default_factory=list)   # Docker's [{"Subnet", "Gateway", "IPRange"}]
    pools: list = field(default_factory=list)         # IPAM pool ids, parallel to ipam_config
    driver_data: dict = field(default_factory=dict)   # what the driver's create_network returned
    predefined: bool = False
    config_only: bool = False   # Docker's --config-only: IPAM and options for --config-from, never built
    config_from: str = ""       # the configuration-only network this one took its configuration from
    enable_ipv6: bool = False
    ipam_config6: dict = field(default_factory=dict)  # the IPv6 pool's {"Subnet", "Gateway", "IPRange"}
    pool6: str = ""                                   # its IPAM pool id

    @property
    def materialized(self) -> bool:
        """Whether the driver built the network on this host (a global network may exist only elsewhere yet)."""
        return bool(self.driver_data)


@dataclass
class EndpointRecord:
    id: str
    network_id: str
    container_id: str
    container_name: str
    sandbox: str
    address: str = ""          # CIDR
    gateway: str = ""
    mac_address: str = ""
    aliases: list = field(default_factory=list)
    interface: str = ""
    ports: dict = field(default_factory=dict)
    address6: str = ""         # CIDR on an IPv6 network
    gateway6: str = ""
    links: list = field(default_factory=list)        # Docker's "CONTAINER:ALIAS": the alias resolves for this one
    driver_opts: dict = field(default_factory=dict)  # Docker's per-endpoint DriverOpts
    link_local_ips: list = field(default_factory=list)
    ipam_config: dict = field(default_factory=dict)  # Docker's IPAMConfig: the addresses the user asked for


def from_fields(cls, data: dict):
    """A record from a dict, ignoring fields this version does not know (written by a newer one, or a peer)."""
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


def load(cls, path: Path):
    return from_fields(cls, json.loads(path.read_text()))


def now() -> str:
    """Docker's creation timestamp format (RFC 3339 with nanoseconds, UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() % 1 * 1e9):09d}Z"
