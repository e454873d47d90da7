"""The agent's half of a task: run a container for each task assigned to this node, report its status.

Only this node's agent writes a task's ``Status`` and ``NetworksAttachments``. Containers are made
through the kernel's normal lifecycle (the Engine API's create translation, ``lifecycle.prepare``,
a detached monitor), so ``pallet ps`` shows them and they outlive the agent. A task's container is
found by its ``com.docker.swarm.task.id`` label; one whose task is gone from the store is removed.
A retired task's container is stopped only once every live node's mesh has applied the retirement
(the agents publish the store revision their mesh applied), so no VIP sends it a connection it
would refuse. Containers are taken down (retired tasks stopped and removed, those of deleted
tasks removed) in the background, ``TAKE_DOWN_WORKERS`` at a time: each mostly waits out its stop
grace period, so ``service rm`` of N tasks costs about one grace period, not N, and the agent's
loop (the leader's scheduling, the other tasks' reports) goes on meanwhile; a later pass reports
the task once its container is gone.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor

from pallet.kernel.cluster import store
from pallet.kernel.errors import PalletError

TASK_LABEL = "com.docker.swarm.task.id"
ENDED = ("complete", "failed", "rejected", "shutdown", "orphaned")
SECOND = 10**9
DRAIN_LIMIT = 5.0   # seconds a retired task's container waits at most for the nodes' meshes to drop it
TAKE_DOWN_WORKERS = 8


def container_name(task: dict) -> str:
    service = (task.get("ServiceAnnotations") or {}).get("Name") or task["ServiceID"]
    return f"{service}.{task.get('Slot') or task.get('NodeID')}.{task['ID']}"


def create_body(task: dict, networks: dict[str, str]) -> dict:
    """The Engine API create body for a task's ``ContainerSpec`` (``networks``: cluster id -> local name)."""
    template = task["Spec"]
    spec = template.get("ContainerSpec") or {}
    limits = (template.get("Resources") or {}).get("Limits") or {}
    labels = dict(spec.get("Labels") or {})
    labels.update({"com.docker.swarm.service.id": task["ServiceID"],
                   "com.docker.swarm.service.name": (task.get("ServiceAnnotations") or {}).get("Name", ""),
                   TASK_LABEL: task["ID"], "com.docker.swarm.task.name": container_name(task),
                   "com.docker.swarm.node.id": task["NodeID"]})
    host = {"Mounts": spec.get("Mounts") or [], "ReadonlyRootfs": bool(spec.get("ReadOnly")),
            "Init": bool(spec.get("Init")), "CapAdd": spec.get("CapabilityAdd") or [],
            "CapDrop": spec.get("CapabilityDrop") or [], "Sysctls": spec.get("Sysctls") or {},
            "Dns": (spec.get("DNSConfig") or {}).get("Nameservers") or [],
            "ExtraHosts": spec.get("Hosts") or []}
    if limits.get("MemoryBytes"):
        host["Memory"] = int(limits["MemoryBytes"])
    if limits.get("NanoCPUs"):
        host["NanoCpus"] = int(limits["NanoCPUs"])
    if limits.get("Pids"):
        host["PidsLimit"] = int(limits["Pids"])
    bindings = {}
    for port in task.get("EndpointPorts") or []:
        if port.get("PublishMode") == "host":
            bindings.setdefault(f"{port['TargetPort']}/{port.get('Protocol', 'tcp')}", []).append(
                {"HostPort": str(port.get("PublishedPort") or "")})
    host["PortBindings"] = bindings
    body = {"Image": spec["Image"], "Cmd": spec.get("Args") or None, "Env": spec.get("Env") or [],
            "Labels": labels, "User": spec.get("User") or "", "WorkingDir": spec.get("Dir") or "",
            "Hostname": spec.get("Hostname") or "", "Tty": bool(spec.get("TTY")),
            "OpenStdin": bool(spec.get("OpenStdin")), "StopSignal": spec.get("StopSignal") or None,
            "HostConfig": host}
    if spec.get("Command"):
        body["Entrypoint"] = spec["Command"]
    if spec.get("Healthcheck"):
        body["Healthcheck"] = spec["Healthcheck"]
    if spec.get("StopGracePeriod") is not None:
        body["StopTimeout"] = max(0, int(spec["StopGracePeriod"]) // SECOND)
    attached = [n for n in template.get("Networks") or [] if n.get("Target")]
    if attached:
        first = attached[0]
        name = networks.get(first["Target"], first["Target"])
        service_name = (task.get("ServiceAnnotations") or {}).get("Name", "")
        host["NetworkMode"] = name
        body["NetworkingConfig"] = {"EndpointsConfig": {name: {"Aliases": [service_name, *(first.get("Aliases") or [])]}}}
    return body


def task_containers(engine) -> dict[str, object]:
    """Task id -> this root's container of that task."""
    from pallet.kernel.containers import ContainerStore

    found = {}
    for record in ContainerStore(engine).all():
        task_id = (record.labels or {}).get(TASK_LABEL) or (record.config.get("Labels") or {}).get(TASK_LABEL)
        if task_id:
            found[task_id] = record
    return found


def secret_reference(ref: dict) -> dict:
    """A ContainerSpec's SecretReference as the container's: its target a file name in /run/secrets."""
    from pallet.kernel.secrets import TARGET_DIR

    name = (ref["File"].get("Name") or ref.get("SecretName", "")).removeprefix(TARGET_DIR + "/")
    if not name or "/" in name or name in (".", ".."):
        raise PalletError(f"secret {ref.get('SecretName', '')}: the target {ref['File'].get('Name')!r} is not a "
                          f"file name in {TARGET_DIR}")
    file = ref["File"]
    return {"SecretID": ref["SecretID"], "SecretName": ref.get("SecretName", ""),
            "File": {"Name": name, "UID": str(file.get("UID") or "0"), "GID": str(file.get("GID") or "0"),
                     "Mode": int(file.get("Mode", 0o444))}}


class Executor:
    def __init__(self, engine, etcd, node_id: str, log=None, drained=None, wake=None):
        self.engine, self.etcd, self.node_id = engine, etcd, node_id
        self.log = log or (lambda message: print(f"pallet agent: {message}", file=sys.stderr, flush=True))
        # drained(revision): every live node's mesh has applied the store at ``revision`` or later
        self.drained = drained or (lambda revision: True)
        self.wake = wake or (lambda: None)   # a take-down finished: run a pass soon (to report it)
        self.retiring: dict[str, float] = {}   # task id -> when this node first saw it retired (monotonic)
        self.down_pool: ThreadPoolExecutor | None = None
        # container id -> (task id or None, its take-down), until a pass has seen it end
        self.going: dict[str, tuple[str | None, Future]] = {}

    def close(self) -> None:
        """Let the take-downs under way finish (the queued ones are left to the next agent)."""
        if self.down_pool is not None:
            self.down_pool.shutdown(wait=True, cancel_futures=True)
            self.down_pool = None

    # --- containers -------------------------------------------------------------------------
    def containers(self) -> dict[str, object]:
        return task_containers(self.engine)

    def _local_networks(self) -> dict[str, str]:
        from pallet.kernel.network.store import NetworkStore

        try:
            network_store = NetworkStore(self.engine)
            cluster = getattr(network_store, "cluster", None)
            if cluster is not None:
                cluster.sync()
            return {r.id: r.name for r in network_store.read_all()}
        except PalletError:
            return {}

    def start(self, task: dict, endpoint_ports: list[dict]) -> object:
        from pallet.kernel import lifecycle, monitor
        from pallet.kernel.api.translate import create_request

        networks = self._local_networks() if task["Spec"].get("Networks") else {}
        request = create_request(create_body(dict(task, EndpointPorts=endpoint_ports), networks), container_name(task))
        request.pull, request.quiet = "missing", True
        container = task["Spec"].get("ContainerSpec") or {}
        if container.get("Secrets"):
            request.host_config["Secrets"] = [secret_reference(ref) for ref in container["Secrets"]]
        if container.get("Configs"):
            request.host_config["Configs"] = [dict(ref) for ref in container["Configs"]]
        self.engine.plugins.load("storage", "security", "runtime")
        record = lifecycle.create(self.engine, request)
        try:
            bundle = lifecycle.prepare(self.engine, record)
            monitor.spawn(self.engine, record, bundle)
        except BaseException:
            self.remove(record)
            raise
        from pallet.kernel.containers import ContainerStore

        return ContainerStore(self.engine).load(record.id)

    def stop(self, record) -> None:
        from pallet.kernel import lifecycle

        try:
            lifecycle.stop(self.engine, record)
        except PalletError as exc:
            self.log(f"stopping {record.name}: {exc}")

    def remove(self, record) -> None:
        from pallet.kernel import lifecycle

        try:
            lifecycle.remove(self.engine, record, force=True)
        except PalletError as exc:
            self.log(f"removing {record.name}: {exc}")

    # --- status ------------------------------------------------------------------------------
    def report(self, snap: store.Snapshot, task: dict, state: str, message: str, err: str = "", record=None,
               health: str | None = None) -> None:
        """Write the task's ``Status`` (and attachments) when something in it changed."""
        old = task.get("Status") or {}
        status = {"State": state, "Timestamp": old.get("Timestamp", ""), "Message": message, "Err": err}
        if state != old.get("State"):
            status["Timestamp"] = store.now()
        if record is not None:
            status["ContainerStatus"] = {"ContainerID": record.id, "PID": record.pid if record.running else 0,
                                         "ExitCode": record.exit_code if not record.running else 0}
        elif old.get("ContainerStatus"):
            status["ContainerStatus"] = old["ContainerStatus"]
        status["Health"] = health if health is not None else old.get("Health", "")
        attachments = task.get("NetworksAttachments") or []
        if record is not None and record.network.get("Networks"):
            attachments = [{"Network": {"ID": n.get("NetworkID", "")},
                            "Addresses": [f"{n['IPAddress']}/{n.get('IPPrefixLen', 0)}"]}
                           for n in record.network["Networks"].values() if n.get("IPAddress")]
        fields = ("State", "Message", "Err", "ContainerStatus", "Health")
        if all(status.get(k) == old.get(k) for k in fields) and attachments == (task.get("NetworksAttachments") or []):
            return
        key = f"{store.TASKS}{task['ID']}"
        updated = {k: v for k, v in task.items() if k != "Version"}
        updated.update(Status=status, NetworksAttachments=attachments, UpdatedAt=store.now())
        revision = self.etcd.txn({key: snap.rev("tasks", task["ID"])}, puts={key: updated})
        if revision:  # later reports of this pass compare against this write
            snap.revisions[key] = revision
            task.update(Status=status, NetworksAttachments=attachments)

    def health_of(self, record) -> str:
        from pallet.kernel import health

        state = health.inspect_state(self.engine, record)
        return "" if state is None else state.get("Status", "starting")

    def reconcile(self, snap: store.Snapshot) -> None:
        """Make this node's containers match its tasks in ``snap``; report each task's status."""
        from pallet.kernel import lifecycle

        containers = self.containers()
        gone = {}   # task id -> its container's last record, taken down since the last pass
        for cid, (task_id, future) in list(self.going.items()):
            if future.done():
                self.going.pop(cid)
                if future.exception() is not None:   # not a PalletError (those are logged): tried again
                    self.log(f"taking down container {cid[:12]}: {future.exception()!r}")
                elif task_id is not None:
                    gone[task_id] = future.result()
        for task_id in [k for k in containers if k not in snap.tasks]:   # deleted (service gone, history trimmed)
            self.take_down(None, containers.pop(task_id), stop=False)
        for task in sorted((t for t in snap.tasks.values() if isinstance(t, dict) and t.get("NodeID") == self.node_id),
                           key=lambda t: t.get("CreatedAt", "")):
            try:
                if task.get("DesiredState") != "running":
                    record = gone.get(task["ID"])
                    if record is None and task["ID"] in containers:
                        self.retire(snap, task, containers[task["ID"]])
                        continue   # a later pass reports it, once its container is gone
                    if task["Status"]["State"] not in ENDED:
                        self.report(snap, task, "shutdown", "shutdown", record=record)
                    continue
                self.reconcile_task(snap, task, containers.get(task["ID"]), lifecycle)
            except PalletError as exc:
                self.log(f"task {task['ID']}: {exc}")

    def retire(self, snap, task: dict, record) -> None:
        """Take a retired task's container down once it has left every VIP (unless that is under way)."""
        from pallet.kernel import lifecycle

        if record.id in self.going:
            return
        record = lifecycle.refresh(self.engine, record)
        if record.running and not self._left_the_vips(snap, task):
            return
        self.retiring.pop(task["ID"], None)
        self.take_down(task["ID"], record, stop=record.running)

    def take_down(self, task_id: str | None, record, stop: bool) -> None:
        """Stop (with ``stop``) and remove ``record`` in the background, unless that is under way."""
        if record.id in self.going:
            return
        if self.down_pool is None:
            self.engine.plugins.load()   # here, once, rather than raced for by the workers
            self.engine.storage  # noqa: B018 - the same: opened before the workers need it
            self.down_pool = ThreadPoolExecutor(TAKE_DOWN_WORKERS, thread_name_prefix="pallet-down")
        future = self.down_pool.submit(self._down, record, stop)
        future.add_done_callback(lambda _future: self.wake())   # once done, so the pass sees it done
        self.going[record.id] = (task_id, future)

    def _down(self, record, stop: bool):
        from pallet.kernel import lifecycle

        try:
            if stop:
                self.stop(record)
                record = lifecycle.refresh(self.engine, record)
            self.remove(record)
        except PalletError as exc:
            self.log(f"taking down {record.name}: {exc}")
        return record

    def _left_the_vips(self, snap, task: dict) -> bool:
        """Whether a retired task's running container may stop: once every live node's mesh applied its
        retirement (no VIP sends it a new connection), or ``DRAIN_LIMIT`` after it was retired
        (a node that does not answer cannot hold a task forever)."""
        first = self.retiring.setdefault(task["ID"], time.monotonic())
        if time.monotonic() - first >= DRAIN_LIMIT:
            return True
        try:
            return self.drained(snap.rev("tasks", task["ID"]))
        except PalletError:
            return False

    def reconcile_task(self, snap, task: dict, record, lifecycle) -> None:
        state = task["Status"]["State"]
        if record is None:
            if state in ("new", "pending", "assigned", "accepted", "preparing"):
                if task["ServiceID"] not in snap.services:
                    return
                self.report(snap, task, "preparing", "preparing")
                service = snap.services[task["ServiceID"]]
                try:
                    record = self.start(task, (service.get("Endpoint") or {}).get("Ports") or [])
                except PalletError as exc:
                    self.report(snap, task, "rejected", "preparing", err=str(exc))
                    return
                self.report(snap, task, "running" if record.running else "starting", "started", record=record,
                            health=self.health_of(record))
            elif state not in ENDED:
                self.report(snap, task, "failed", "task: container removed", err="task: container removed")
            return
        record = lifecycle.refresh(self.engine, record)
        if record.running:
            health = self.health_of(record)
            if health == "unhealthy":
                self.stop(record)
                record = lifecycle.refresh(self.engine, record)
                self.report(snap, task, "failed", "unhealthy", err="task: unhealthy container", record=record,
                            health=health)
                return
            self.report(snap, task, "running", "started", record=record, health=health)
        elif record.status == "exited" and state not in ENDED:
            code = record.exit_code
            if code == 0:
                self.report(snap, task, "complete", "finished", record=record)
            else:
                self.report(snap, task, "failed", "started", err=f"task: non-zero exit ({code})", record=record)
