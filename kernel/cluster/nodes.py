"""Nodes of the cluster: joining, listing (Ready/Down from the alive keys, the leader), updating, removing.

A node's record is written by whoever changes its ``Spec`` (``node update``) and by the node itself
when it joins; its ``Status.State`` and ``ManagerStatus`` are not stored but derived on every read
from ``alive/<id>`` (present while the node's agent keeps its lease) and the election's leader.
"""

from __future__ import annotations

import os
import platform
import socket
from urllib.parse import urlparse

from pallet.kernel import __version__
from pallet.kernel.cluster import credentials, store
from pallet.kernel.errors import Conflict, NotFound, PalletError, UsageError

ROLES = ("manager", "worker")
AVAILABILITIES = ("active", "pause", "drain")


def _address_towards(base: str) -> str:
    """The local address this host uses to reach ``base`` (the default advertise address)."""
    host = urlparse(base).hostname or "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((host, 9))
            return sock.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def parse_labels(pairs) -> dict:
    labels = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not key:
            raise UsageError(f'invalid label "{pair}": expected KEY=VALUE')
        labels[key] = value
    return labels


def join(engine, urls: str, role: str = "worker", labels: dict | None = None, hostname: str | None = None,
         advertise_addr: str | None = None) -> str:
    """Make this root a node of the cluster whose store is at ``urls``; its node id (kept in the root)."""
    from pallet.kernel.network.etcd import Etcd

    if role not in ROLES:
        raise UsageError(f'invalid role "{role}": expected manager or worker')
    if store.membership(engine) is not None:
        raise Conflict('This node is already part of a cluster. Use "pallet node rm --force self" to leave it '
                       'and join another one.')
    etcd = Etcd(urls)
    credentials.check_join(engine, etcd)
    node_id = store.new_id()
    stamp = store.now()
    record = {
        "ID": node_id, "CreatedAt": stamp, "UpdatedAt": stamp,
        "Spec": {"Labels": dict(labels or {}), "Role": role, "Availability": "active"},
        "Description": {
            "Hostname": hostname or socket.gethostname(),
            "Platform": {"Architecture": platform.machine(), "OS": "linux"},
            "Resources": {"NanoCPUs": (os.cpu_count() or 1) * 10**9, "MemoryBytes": _memory_bytes()},
            "Engine": {"EngineVersion": __version__},
        },
        "Status": {"State": "unknown", "Addr": advertise_addr or _address_towards(etcd.base)},
    }
    if not etcd.create(f"{store.NODES}{node_id}", record):
        raise PalletError("node id collision in the cluster store, try again")
    store.save_membership(engine, node_id, etcd.url)
    return node_id


def derive(record: dict, snap: store.Snapshot, leader: str | None) -> dict:
    """The record as the API shows it: ``Status.State`` from the alive key, ``ManagerStatus`` for managers."""
    node_id = record["ID"]
    alive = node_id in snap.alive
    status = dict(record.get("Status") or {})
    status["State"] = "ready" if alive else "down"
    if alive and isinstance(snap.alive[node_id], str) and snap.alive[node_id]:
        status["Addr"] = snap.alive[node_id]
    shown = dict(record, Status=status)
    if record["Spec"].get("Role") == "manager":
        shown["ManagerStatus"] = {"Leader": leader == node_id, "Reachability": "reachable" if alive else "unreachable",
                                  "Addr": f"{status.get('Addr', '')}:2377"}
    else:
        shown.pop("ManagerStatus", None)
    return shown


def _snapshot(engine):
    etcd = store.connect(engine)
    return etcd, store.snapshot(etcd), etcd.leader(store.LEADER)


def _match(filters: dict, node: dict, self_id: str) -> bool:
    for key, wanted in (filters or {}).items():
        values = wanted if isinstance(wanted, (list, tuple, set)) else [wanted]
        if key == "id" and not any(node["ID"].startswith(v) for v in values):
            return False
        if key == "name" and node["Description"]["Hostname"] not in values:
            return False
        if key == "role" and node["Spec"]["Role"] not in values:
            return False
        if key == "membership" and "accepted" not in values:
            return False
        if key == "node.label" or key == "label":
            for value in values:
                name, _, expected = value.partition("=")
                labels = node["Spec"].get("Labels") or {}
                if name not in labels or (expected and labels[name] != expected):
                    return False
    return True


def list_nodes(engine, filters: dict | None = None) -> list[dict]:
    """Every node, as Docker's ``Node`` objects, sorted by hostname then id."""
    _etcd, snap, leader = _snapshot(engine)
    self_id = store.require_membership(engine)["ID"]
    shown = [derive(record, snap, leader) for record in snap.nodes.values() if isinstance(record, dict)]
    shown = [node for node in shown if _match(filters or {}, node, self_id)]
    return sorted(shown, key=lambda n: (n["Description"]["Hostname"], n["ID"]))


def resolve(engine, snap: store.Snapshot, id_or_name: str) -> dict:
    """The node named by ``id_or_name``: ``self``, a full id, a unique id prefix, or a hostname."""
    if id_or_name == "self":
        id_or_name = store.require_membership(engine)["ID"]
    if id_or_name in snap.nodes:
        return snap.nodes[id_or_name]
    by_name = [n for n in snap.nodes.values() if n["Description"]["Hostname"] == id_or_name]
    if len(by_name) == 1:
        return by_name[0]
    by_prefix = [n for n in snap.nodes.values() if n["ID"].startswith(id_or_name)]
    if len(by_prefix) == 1:
        return by_prefix[0]
    if len(by_name) > 1 or len(by_prefix) > 1:
        raise Conflict(f"node {id_or_name} is ambiguous ({len(by_name) or len(by_prefix)} matches found)")
    raise NotFound(f"node {id_or_name} not found")


def inspect_node(engine, id_or_name: str) -> dict:
    _etcd, snap, leader = _snapshot(engine)
    return derive(resolve(engine, snap, id_or_name), snap, leader)


def update_node(engine, id_or_name: str, availability: str | None = None, role: str | None = None,
                label_add: dict | None = None, label_rm=(), spec: dict | None = None) -> dict:
    """Change a node's ``Spec`` (a whole new ``spec``, or the given parts); the updated record."""
    if availability is not None and availability not in AVAILABILITIES:
        raise UsageError(f'invalid availability "{availability}": expected active, pause or drain')
    if role is not None and role not in ROLES:
        raise UsageError(f'invalid role "{role}": expected manager or worker')
    etcd, snap, leader = _snapshot(engine)
    node = resolve(engine, snap, id_or_name)

    def change(record):
        if spec is not None:
            record["Spec"] = {"Labels": spec.get("Labels") or {}, "Role": spec.get("Role") or record["Spec"]["Role"],
                              "Availability": spec.get("Availability") or record["Spec"]["Availability"]}
        labels = record["Spec"].setdefault("Labels", {})
        for key in label_rm or ():
            if key not in labels:
                raise NotFound(f"key {key} doesn't exist in node's labels")
            labels.pop(key)
        labels.update(label_add or {})
        if availability is not None:
            record["Spec"]["Availability"] = availability
        if role is not None:
            record["Spec"]["Role"] = role
        if record["Spec"]["Role"] not in ROLES or record["Spec"]["Availability"] not in AVAILABILITIES:
            raise UsageError("invalid node spec: Role must be manager|worker, Availability active|pause|drain")

    updated = store.update_record(etcd, f"{store.NODES}{node['ID']}", change, f"node {id_or_name} not found")
    return derive(dict(updated, ID=node["ID"]), snap, leader)


def remove_node(engine, id_or_name: str, force: bool = False) -> str:
    """Remove a node from the cluster (a Ready one only with ``force``); its tasks are rescheduled."""
    etcd, snap, _leader = _snapshot(engine)
    node = resolve(engine, snap, id_or_name)
    node_id = node["ID"]
    if snap.ready(node_id) and not force:
        raise Conflict(f"node {node_id} is not down and can't be removed (use --force)")
    etcd.delete(f"{store.NODES}{node_id}")
    etcd.delete(f"{store.ALIVE}{node_id}")
    if not etcd.range(store.NODES)[0]:   # the last node: the cluster's key is no one's any more
        etcd.delete(credentials.CLUSTER)
    joined = store.membership(engine)
    if joined and joined["ID"] == node_id:
        store.forget_membership(engine)
    return node_id
