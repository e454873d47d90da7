"""Global-scope networks in the cluster store (etcd): names claimed cluster-wide, hosts joining and leaving.

Keys under ``/pallet/``: ``names/<name>`` -> network id (claimed with create-if-absent, so two
hosts cannot create the same name), ``networks/<id>`` -> the shared record, ``hosts/<id>/<host
id>`` -> this host's VTEP while it uses the network. Drivers keep their own keys beside these
(``endpoints/<id>/``, ``leases/<id>/``), removed with the network when its last host leaves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path

from pallet.kernel.errors import Conflict
from pallet.kernel.fsutil import atomic_write
from pallet.kernel.network.records import NetworkRecord, from_fields

PREFIX = "/pallet/"


class Cluster:
    """One root's view of the cluster store at ``url``; the network store calls it with its lock held."""

    def __init__(self, store, url: str):
        from pallet.kernel.network.etcd import Etcd

        self.store = store
        self.etcd = Etcd(url)

    def host_id(self) -> str:
        """This root's id among the cluster's hosts, made once and kept in ``<root>/network/host-id``."""
        path = Path(self.store.engine.root) / "network" / "host-id"
        with contextlib.suppress(FileNotFoundError):
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, os.urandom(16).hex().encode())
        return path.read_text().strip()

    def claim_name(self, record: NetworkRecord) -> None:
        if not self.etcd.create(f"{PREFIX}names/{record.name}", record.id):
            raise Conflict(f"network with name {record.name} already exists in the cluster")

    def release_name(self, record: NetworkRecord) -> None:
        self.etcd.delete(f"{PREFIX}names/{record.name}")

    def join(self, record: NetworkRecord) -> None:
        """Publish the network (first host) and register this host as a user of it."""
        if "vni" in record.driver_data:
            record.options.setdefault("com.docker.network.driver.overlay.vxlanid_list", str(record.driver_data["vni"]))
        shared = dict(dataclasses.asdict(record), driver_data={}, predefined=False)
        self.etcd.put(f"{PREFIX}networks/{record.id}", shared)
        self.etcd.put(f"{PREFIX}hosts/{record.id}/{self.host_id()}", record.driver_data.get("vtep", ""))

    def leave(self, record: NetworkRecord, network_driver) -> bool:
        """Unregister this host; the last host to leave removes the network from the cluster. True if last."""
        etcd = self.etcd
        etcd.delete(f"{PREFIX}hosts/{record.id}/{self.host_id()}")
        if etcd.range(f"{PREFIX}hosts/{record.id}/")[0]:
            return False
        if etcd.get(f"{PREFIX}names/{record.name}") == record.id:
            etcd.delete(f"{PREFIX}names/{record.name}")
        etcd.delete(f"{PREFIX}networks/{record.id}")
        etcd.delete(f"{PREFIX}endpoints/{record.id}/", prefix=True)
        etcd.delete(f"{PREFIX}leases/{record.id}/", prefix=True)
        network_driver.release_cluster(record.id, record.options)
        return True

    def sync(self) -> None:
        """Adopt global networks created on other hosts; forget unused ones the cluster no longer has."""
        store = self.store
        shared, _rev = self.etcd.range(f"{PREFIX}networks/")
        with store.lock():
            local = {r.id: r for r in store.read_all()}
            for value in shared.values():
                if isinstance(value, dict) and value.get("id") not in local:
                    store.save(from_fields(NetworkRecord, value))
            ids = {v.get("id") for v in shared.values() if isinstance(v, dict)}
            for record in local.values():
                if record.scope == "global" and record.id not in ids and not record.materialized:
                    store.path(record.id).unlink(missing_ok=True)
