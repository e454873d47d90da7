"""``pallet agent``: one node's presence in the cluster and its reconcile loop (``pallet serve`` runs it too).

Threads: the *lease* keeper (grants a lease of ``lease_ttl`` seconds, puts ``alive/<node>`` under
it, refreshes it; a lease that expired is granted anew), the *campaign* (managers only: etcd's
election API on ``leader`` with this lease, so a leader whose agent dies loses the office when the
lease expires), and the *watch* on ``/pallet/swarm/`` that wakes the main loop. The main loop
reads a snapshot and runs, in order, the leader's scheduler (if this node leads), the mesh's
``sync`` (a retired task leaves this node's VIPs), this node's executor and ``sync`` again (the
tasks it started join them); it also runs every second without a change, so a missed watch event
costs at most a second. The revision the mesh applied is published (``MESH_SYNCED``) so that the
executor of the node that runs a retired task stops it only once no node's VIP can still pick it. The *log server* (:mod:`.logs`) answers other nodes' ``service logs``
for this node's tasks, over mutual TLS from the cluster key; its address is published under the same lease.
An agent whose key is not the cluster's (:mod:`.credentials`) does not start.
"""

from __future__ import annotations

import signal
import sys
import threading
import time

from pallet.kernel.cluster import PREFIX, credentials, logs, mesh, store
from pallet.kernel.cluster.executor import Executor
from pallet.kernel.cluster.scheduler import Scheduler
from pallet.kernel.errors import PalletError

DEFAULT_LEASE_TTL = 10
# The store revision each node's mesh has applied, under its lease; outside PREFIX, so that these
# writes wake no agent's watch.
MESH_SYNCED = "/pallet/mesh-synced/"


class Agent:
    def __init__(self, engine, lease_ttl: int = DEFAULT_LEASE_TTL, log=None):
        joined = store.require_membership(engine)
        self.engine = engine
        self.node_id = joined["ID"]
        self.etcd = store.connect(engine, timeout=max(2.0, lease_ttl / 3))
        self.lease_ttl = max(2, int(lease_ttl))
        self.log = log or (lambda message: print(f"pallet agent: {message}", file=sys.stderr, flush=True))
        self.stopping = threading.Event()
        self.changed = threading.Event()
        self.lease: str | None = None
        self.lease_changed = threading.Event()
        self.leader_key: dict | None = None
        self.scheduler = Scheduler(self.etcd)
        self.executor = Executor(engine, self.etcd, self.node_id, self.log, drained=self.meshes_applied,
                                 wake=self.changed.set)
        self.synced_data = -1
        self.address = ""
        self.log_server: logs.LogServer | None = None

    # --- presence -------------------------------------------------------------------------------
    def _node(self) -> dict:
        node = self.etcd.get(f"{store.NODES}{self.node_id}")
        if not isinstance(node, dict):
            raise PalletError(f"node {self.node_id} is not in the cluster any more (removed with node rm)")
        return node

    def _announce(self) -> None:
        node = self._node()
        self.address = (node.get("Status") or {}).get("Addr", "")
        lease = self.etcd.grant(self.lease_ttl)
        self.etcd.put(f"{store.ALIVE}{self.node_id}", self.address, lease=lease)
        if self.log_server is not None:
            self.etcd.put(f"{logs.LOG_ENDPOINTS}{self.node_id}", self.log_server.url, lease=lease)
        self.lease = lease
        self.synced_data = -1   # the mesh revision is published again under the new lease
        self.lease_changed.set()

    def keep_lease(self) -> None:
        interval = max(0.5, self.lease_ttl / 3)
        while not self.stopping.wait(interval):
            try:
                if self.lease is None or self.etcd.keepalive(self.lease) <= 0:
                    self.log("lease expired: announcing this node again")
                    self.leader_key = None
                    self._announce()
            except PalletError as exc:
                self.log(f"keeping the lease: {exc}")

    def campaign(self) -> None:
        while not self.stopping.is_set():
            lease = self.lease
            try:
                key = self.etcd.campaign(store.LEADER, lease, self.node_id)
            except PalletError as exc:
                if self.stopping.is_set():
                    return
                self.log(f"campaign: {exc}")
                self.stopping.wait(1)
                continue
            if lease != self.lease:
                continue
            self.leader_key = key
            self.log("this node is the leader")
            self.changed.set()
            self.lease_changed.clear()
            while not self.stopping.is_set() and not self.lease_changed.wait(1):
                pass

    def watch(self) -> None:
        revision = 0
        while not self.stopping.is_set():
            try:
                if not revision:
                    revision = self.etcd.range(store.NODES)[1]
                for _kind, _key, _value in self.etcd.watch(PREFIX, revision + 1):
                    self.changed.set()
                    if self.stopping.is_set():
                        return
                revision = 0
            except PalletError:
                revision = 0
                self.stopping.wait(0.5)

    def leading(self) -> bool:
        if self.leader_key is None:
            return False
        try:
            return self.etcd.leader(store.LEADER) == self.node_id
        except PalletError:
            return False

    # --- the loop -------------------------------------------------------------------------------
    def pass_once(self) -> None:
        snap = store.snapshot(self.etcd)
        if self.node_id not in snap.nodes:
            raise PalletError(f"node {self.node_id} is not in the cluster any more (removed with node rm)")
        if self.leading():
            self.scheduler.reconcile(snap)
            snap = store.snapshot(self.etcd)
        try:
            self.sync_mesh(snap)   # retired tasks leave this node's VIPs before any container stops
        except PalletError as exc:   # the executor's work goes on; the sync after it says it again
            self.log(f"mesh: {exc}")
        self.executor.reconcile(snap)
        self.sync_mesh(snap)   # and the tasks this pass started join them

    def sync_mesh(self, snap: store.Snapshot) -> None:
        mesh.sync(self.engine, self.etcd, [s for s in snap.services.values() if isinstance(s, dict)],
                  [t for t in snap.tasks.values() if isinstance(t, dict)])
        data = max(snap.revisions.values(), default=0)
        if data != self.synced_data and self.lease is not None:
            self.etcd.put(f"{MESH_SYNCED}{self.node_id}", str(snap.revision), lease=self.lease)
            self.synced_data = data

    def meshes_applied(self, revision: int) -> bool:
        """Whether every live node's mesh has applied the store at ``revision`` or later."""
        synced = self.etcd.range(MESH_SYNCED)[0]
        alive = [key.rsplit("/", 1)[1] for key in self.etcd.range(store.ALIVE)[0]]
        return all(int(synced.get(f"{MESH_SYNCED}{node}") or 0) >= revision for node in alive)

    def start_thread(self) -> threading.Thread:
        """Run the agent beside something else (``pallet serve``): a daemon thread, no signal handlers."""
        thread = threading.Thread(target=self._run_logged, daemon=True, name="pallet-agent")
        thread.start()
        return thread

    def _run_logged(self) -> None:
        try:
            self.run(signals=False)
        except PalletError as exc:
            self.log(f"stopped: {exc}")

    def run(self, signals: bool = True) -> None:
        if signals:
            signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
            signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        node = self._node()
        credentials.check_member(self.engine, self.etcd)
        try:
            self.log_server = logs.LogServer(self.engine, (node.get("Status") or {}).get("Addr", ""))
        except (OSError, PalletError) as exc:
            self.log(f"serving logs: {exc} (service logs will not reach this node's tasks)")
        self._announce()
        role = self._node()["Spec"].get("Role")
        threads = [threading.Thread(target=self.keep_lease, daemon=True),
                   threading.Thread(target=self.watch, daemon=True)]
        if role == "manager":
            threads.append(threading.Thread(target=self.campaign, daemon=True))
        for thread in threads:
            thread.start()
        self.log(f"node {self.node_id} ({role}) is up, lease TTL {self.lease_ttl}s")
        try:
            while not self.stopping.is_set():
                self.changed.clear()
                try:
                    self.pass_once()
                except PalletError as exc:
                    if "not in the cluster any more" in str(exc):
                        raise
                    self.log(str(exc))
                self.changed.wait(1.0)
                time.sleep(0.05)  # gather a burst of watch events into one pass
        finally:
            self.stopping.set()
            self.shutdown()

    def shutdown(self) -> None:
        """Step down as leader at once (another manager takes over); the lease itself runs out."""
        key = self.leader_key
        self.leader_key = None
        if key is not None:
            try:
                self.etcd.resign(key)
            except PalletError:
                pass
        if self.log_server is not None:
            self.log_server.close()
            self.log_server = None
        self.executor.close()
        for key in (f"{logs.LOG_ENDPOINTS}{self.node_id}", f"{MESH_SYNCED}{self.node_id}"):
            try:
                self.etcd.delete(key)
            except PalletError:
                pass
