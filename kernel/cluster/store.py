"""This root's membership (``<root>/cluster/node.json``) and the reads and writes of the cluster records.

Every write of a shared record is a transaction comparing its ``mod_revision``, so two writers
never lose each other's changes: the loser reads again and retries (``update_record``).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import string
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pallet.kernel.cluster import PREFIX
from pallet.kernel.errors import NotFound, PalletError
from pallet.kernel.fsutil import atomic_write_json

NODES, ALIVE, SERVICES, NAMES, TASKS = (f"{PREFIX}{k}/" for k in ("nodes", "alive", "services", "service-names",
                                                                   "tasks"))
LEADER = f"{PREFIX}leader"
ID_ALPHABET = string.ascii_lowercase + string.digits


class NotInCluster(PalletError):
    """This root has not joined a cluster (the API answers 503, as Docker does outside swarm mode)."""


def new_id() -> str:
    """A Docker-like object id: 25 characters of [a-z0-9]."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(25))


def now() -> str:
    """RFC 3339 with nanoseconds' width, as Docker's timestamps are."""
    stamp = time.time()
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(stamp % 1 * 1e9):09d}Z"


def parse_time(text: str) -> float:
    """Seconds since the epoch of a timestamp written by ``now`` (0 for an empty one)."""
    if not text:
        return 0.0
    main, _, frac = text.rstrip("Z").partition(".")
    base = datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return base + (float("0." + frac) if frac else 0.0)


def membership_path(engine) -> Path:
    return Path(engine.root) / "cluster" / "node.json"


def membership(engine) -> dict | None:
    """``{"ID", "ClusterStore"}`` of this root's node, None when it never joined."""
    with contextlib.suppress(FileNotFoundError):
        return json.loads(membership_path(engine).read_text())
    return None


def save_membership(engine, node_id: str, url: str) -> None:
    path = membership_path(engine)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"ID": node_id, "ClusterStore": url})


def forget_membership(engine) -> None:
    membership_path(engine).unlink(missing_ok=True)


def require_membership(engine) -> dict:
    joined = membership(engine)
    if joined is None:
        raise NotInCluster('this node is not part of a cluster: join one first with '
                           '"pallet node join --cluster-store etcd://HOST:PORT"')
    return joined


def connect(engine, timeout: float = 10.0):
    """The cluster store client of this root's cluster."""
    from pallet.kernel.network.etcd import Etcd

    return Etcd(require_membership(engine)["ClusterStore"], timeout=timeout)


@dataclass
class Snapshot:
    """Every cluster record at one store revision, with each key's ``mod_revision``."""

    nodes: dict[str, dict] = field(default_factory=dict)
    alive: dict[str, object] = field(default_factory=dict)
    services: dict[str, dict] = field(default_factory=dict)
    tasks: dict[str, dict] = field(default_factory=dict)
    revisions: dict[str, int] = field(default_factory=dict)
    revision: int = 0

    def rev(self, kind: str, object_id: str) -> int:
        return self.revisions.get(f"{PREFIX}{kind}/{object_id}", 0)

    def ready(self, node_id: str) -> bool:
        return node_id in self.alive and node_id in self.nodes


def snapshot(etcd) -> Snapshot:
    items, revisions, revision = etcd.range_kv(PREFIX)
    snap = Snapshot(revisions=revisions, revision=revision)
    for key, value in items.items():
        kind, _, object_id = key[len(PREFIX):].partition("/")
        if not object_id or "/" in object_id:
            continue
        target = {"nodes": snap.nodes, "alive": snap.alive, "services": snap.services, "tasks": snap.tasks}.get(kind)
        if target is not None:
            target[object_id] = value
            if isinstance(value, dict):
                value.setdefault("Version", {})["Index"] = revisions[key]
    return snap


def records(etcd, prefix: str) -> list[dict]:
    """The JSON records under ``prefix``, each with ``Version.Index`` (its key's ``mod_revision``)."""
    items, revisions, _revision = etcd.range_kv(prefix)
    found = []
    for key, value in items.items():
        if isinstance(value, dict):
            value.setdefault("Version", {})["Index"] = revisions[key]
            found.append(value)
    return found


def update_record(etcd, key: str, change, missing: str, attempts: int = 20) -> dict:
    """Read ``key``, apply ``change(record)`` (which edits it in place), write it back if nobody wrote
    it meanwhile; retry on a lost race. ``missing`` is the NotFound message."""
    for _ in range(attempts):
        record, revision = etcd.get_kv(key)
        if not isinstance(record, dict):
            raise NotFound(missing)
        if change(record) is False:
            return record
        record["UpdatedAt"] = now()
        record.pop("Version", None)
        if etcd.txn({key: revision}, puts={key: record}):
            return record
    raise PalletError(f"{key}: too many concurrent updates, try again")
