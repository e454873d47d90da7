"""Services' desired state in the cluster store: create, update (and roll back), remove, list, inspect; tasks.

These functions are what the CLI, ``stack deploy`` and the Engine API call. They write only the
service records (in transactions); the leader's scheduler turns them into tasks, and each node's
agent runs its own tasks. Specs are Docker's ``ServiceSpec``; ``normalize`` fills Docker's defaults.
"""

from __future__ import annotations

import copy
import re

from pallet.kernel.cluster import mesh, placement, store
from pallet.kernel.errors import Conflict, NotFound, UsageError

NAME = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9_.-]{0,62})$")
SECOND = 10**9
UPDATE_DEFAULTS = {"Parallelism": 1, "Delay": 0, "FailureAction": "pause", "Monitor": 5 * SECOND,
                   "MaxFailureRatio": 0, "Order": "stop-first"}
RESTART_DEFAULTS = {"Condition": "any", "Delay": 5 * SECOND, "MaxAttempts": 0}
FAILURE_ACTIONS = ("pause", "continue", "rollback")
ORDERS = ("stop-first", "start-first")
CONDITIONS = ("none", "on-failure", "any")
FIRST_PUBLISHED_PORT = 30000  # Docker assigns ingress ports from 30000 up when none is given


def _random_name(etcd) -> str:
    from pallet.kernel.containers import _random_name as docker_like

    taken = set(etcd.range(store.NAMES)[0])
    return docker_like({key[len(store.NAMES):] for key in taken})


def normalize(spec: dict, etcd=None) -> dict:
    """A copy of ``spec`` with Docker's defaults filled in, checked; a UsageError names what is wrong."""
    if not isinstance(spec, dict):
        raise UsageError("invalid service spec: expected an object")
    spec = copy.deepcopy(spec)
    if not spec.get("Name"):
        if etcd is None:
            raise UsageError("invalid service spec: Name is required")
        spec["Name"] = _random_name(etcd)
    if not NAME.match(spec["Name"]):
        raise UsageError(f'invalid name "{spec["Name"]}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, '
                         f'63 characters at most')
    spec.setdefault("Labels", {})
    template = spec.setdefault("TaskTemplate", {})
    container = template.setdefault("ContainerSpec", {})
    if not container.get("Image"):
        raise UsageError("ContainerSpec: image reference must be provided")
    template.setdefault("Resources", {})
    template["Resources"].setdefault("Limits", {})
    template["Resources"].setdefault("Reservations", {})
    restart = template.setdefault("RestartPolicy", {})
    for key, value in RESTART_DEFAULTS.items():
        restart.setdefault(key, value)
    if restart["Condition"] not in CONDITIONS:
        raise UsageError(f'invalid restart condition "{restart["Condition"]}": expected none, on-failure or any')
    placed = template.setdefault("Placement", {})
    for constraint in placed.get("Constraints") or []:
        placement.parse_constraint(constraint)
    placement.spread_keys(placed.get("Preferences") or [])
    template.setdefault("ForceUpdate", 0)
    if spec.get("Networks") and not template.get("Networks"):  # the deprecated top-level field
        template["Networks"] = spec.pop("Networks")
    spec.pop("Networks", None)
    template["Networks"] = [_network(etcd, n) for n in template.get("Networks") or []]
    mode = spec.setdefault("Mode", {"Replicated": {"Replicas": 1}})
    if ("Replicated" in mode) == ("Global" in mode):
        raise UsageError("invalid mode: exactly one of Replicated and Global must be given")
    if "Replicated" in mode:
        replicas = (mode["Replicated"] or {}).get("Replicas", 1)
        if not isinstance(replicas, int) or replicas < 0:
            raise UsageError(f"invalid replicas value {replicas}: must be a non-negative integer")
        mode["Replicated"] = {"Replicas": replicas}
    for key in ("UpdateConfig", "RollbackConfig"):
        config = spec.setdefault(key, {})
        for name, value in UPDATE_DEFAULTS.items():
            config.setdefault(name, value)
        if config["FailureAction"] not in FAILURE_ACTIONS:
            raise UsageError(f'invalid {key} FailureAction "{config["FailureAction"]}": '
                             f'expected pause, continue or rollback')
        if config["Order"] not in ORDERS:
            raise UsageError(f'invalid {key} Order "{config["Order"]}": expected stop-first or start-first')
    endpoint = spec.setdefault("EndpointSpec", {})
    endpoint.setdefault("Mode", "vip")
    if endpoint["Mode"] not in ("vip", "dnsrr"):
        raise UsageError(f'invalid endpoint mode "{endpoint["Mode"]}": expected vip or dnsrr')
    ports = []
    for port in endpoint.get("Ports") or []:
        port = dict(port)
        if not port.get("TargetPort"):
            raise UsageError("invalid port: TargetPort must be given")
        port.setdefault("Protocol", "tcp")
        port.setdefault("PublishMode", "ingress")
        if endpoint["Mode"] == "dnsrr" and port["PublishMode"] == "ingress":
            raise UsageError("port published with ingress mode can't be used with dnsrr mode")
        ports.append(port)
    endpoint["Ports"] = ports
    return spec


def _network(etcd, attachment) -> dict:
    """A ``NetworkAttachmentConfig`` whose ``Target`` is the network's id in the cluster store."""
    if isinstance(attachment, str):
        attachment = {"Target": attachment}
    attachment = dict(attachment)
    target = attachment.get("Target") or ""
    if etcd is not None:
        by_name = etcd.get(f"/pallet/names/{target}")
        if isinstance(by_name, str) and by_name:
            attachment.setdefault("Aliases", [])
            attachment["Target"] = by_name
        elif etcd.get(f"/pallet/networks/{target}") is None:
            raise NotFound(f"network {target} not found")
    return attachment


def _endpoint(spec: dict, services: dict, previous: dict | None = None) -> dict:
    """The service's ``Endpoint``: its spec and the ports, an ingress port given one when asked for none."""
    taken = {p.get("PublishedPort") for s in services.values() for p in (s.get("Endpoint") or {}).get("Ports") or []}
    kept = {(p["TargetPort"], p["Protocol"]): p.get("PublishedPort") for p in (previous or {}).get("Ports") or []}
    ports = []
    for port in spec["EndpointSpec"]["Ports"]:
        port = dict(port)
        if not port.get("PublishedPort") and port["PublishMode"] == "ingress":
            port["PublishedPort"] = kept.get((port["TargetPort"], port["Protocol"])) or next(
                n for n in range(FIRST_PUBLISHED_PORT, 32768) if n not in taken)
            taken.add(port["PublishedPort"])
        ports.append(port)
    endpoint = {"Spec": spec["EndpointSpec"], "Ports": ports}
    if previous and previous.get("VirtualIPs"):
        endpoint["VirtualIPs"] = previous["VirtualIPs"]
    return endpoint


def create(engine, spec: dict) -> str:
    """Create a service from a ``ServiceSpec``; its id. A taken name is a Conflict."""
    etcd = store.connect(engine)
    spec = normalize(spec, etcd)
    snap = store.snapshot(etcd)
    if etcd.get(f"{store.NAMES}{spec['Name']}") is not None:
        raise Conflict(f"service {spec['Name']} already exists (name conflicts with an existing object)")
    service_id = store.new_id()
    stamp = store.now()
    service = {"ID": service_id, "CreatedAt": stamp, "UpdatedAt": stamp, "Spec": spec,
               "Endpoint": _endpoint(spec, snap.services)}
    vips = mesh.allocate_vips(engine, etcd, service)
    if vips:
        service["Endpoint"]["VirtualIPs"] = vips
    name_key = f"{store.NAMES}{spec['Name']}"
    if not etcd.txn({name_key: 0}, puts={name_key: service_id, f"{store.SERVICES}{service_id}": service}):
        mesh.release_vips(engine, etcd, service)
        raise Conflict(f"service {spec['Name']} already exists (name conflicts with an existing object)")
    return service_id


def resolve(snap: store.Snapshot, id_or_name: str) -> dict:
    """The service named by ``id_or_name``: a full id, a name, or a unique id prefix."""
    services = [s for s in snap.services.values() if isinstance(s, dict)]
    for match in ([s for s in services if s["ID"] == id_or_name], [s for s in services if s["Spec"]["Name"] == id_or_name],
                  [s for s in services if s["ID"].startswith(id_or_name)]):
        if len(match) == 1:
            return match[0]
        if len(match) > 1:
            raise Conflict(f"service {id_or_name} is ambiguous ({len(match)} matches found)")
    raise NotFound(f"service {id_or_name} not found")


def update(engine, service_id_or_name: str, spec: dict | None, rollback: bool = False) -> dict:
    """Give the service a new spec (kept as ``PreviousSpec``), or with ``rollback`` its previous one back.

    A change of the task template starts a rolling update, run by the leader as ``UpdateConfig``
    (``RollbackConfig`` for a rollback) says. The updated service record is returned.
    """
    etcd = store.connect(engine)
    snap = store.snapshot(etcd)
    current = resolve(snap, service_id_or_name)
    new_spec = None if rollback else normalize(spec, etcd)
    if new_spec is not None and new_spec["Name"] != current["Spec"]["Name"]:
        raise UsageError("renaming services is not supported")

    def change(record):
        old = record["Spec"]
        if rollback:
            if not record.get("PreviousSpec"):
                raise Conflict(f"service {record['ID']} does not have a previous spec")
            record["Spec"], record["PreviousSpec"] = record["PreviousSpec"], old
        else:
            record["PreviousSpec"], record["Spec"] = old, new_spec
        record["Endpoint"] = _endpoint(record["Spec"], {k: v for k, v in snap.services.items() if k != record["ID"]},
                                       record.get("Endpoint"))
        if record["Spec"]["TaskTemplate"] != old["TaskTemplate"] or rollback:
            record["UpdateStatus"] = {
                "State": "rollback_started" if rollback else "updating", "StartedAt": store.now(),
                "Message": "manually requested rollback" if rollback else "update in progress"}

    return store.update_record(etcd, f"{store.SERVICES}{current['ID']}", change,
                               f"service {service_id_or_name} not found")


def remove(engine, id_or_name: str) -> str:
    """Remove the service; the leader retires its tasks and the agents remove their containers. Its id."""
    etcd = store.connect(engine)
    snap = store.snapshot(etcd)
    service = resolve(snap, id_or_name)
    key, name_key = f"{store.SERVICES}{service['ID']}", f"{store.NAMES}{service['Spec']['Name']}"
    deletes = [key] + ([name_key] if etcd.get(name_key) == service["ID"] else [])
    if not etcd.txn({key: snap.rev("services", service["ID"])}, deletes=deletes):
        raise Conflict(f"service {id_or_name} changed while being removed, try again")
    mesh.release_vips(engine, etcd, service)
    return service["ID"]


def with_status(service: dict, snap: store.Snapshot) -> dict:
    """The record with Docker's ``ServiceStatus`` (running and desired tasks), as ``?status=true`` gives."""
    tasks = [t for t in snap.tasks.values() if isinstance(t, dict) and t.get("ServiceID") == service["ID"]]
    running = sum(t["DesiredState"] == "running" and t["Status"]["State"] == "running" and snap.ready(t.get("NodeID", ""))
                  for t in tasks)
    mode = service["Spec"]["Mode"]
    if "Replicated" in mode:
        desired = mode["Replicated"]["Replicas"]
    else:
        desired = sum(t["DesiredState"] == "running" for t in tasks)
    return dict(service, ServiceStatus={"RunningTasks": running, "DesiredTasks": desired, "CompletedTasks": 0})


def _match_service(filters: dict, service: dict) -> bool:
    for key, wanted in (filters or {}).items():
        values = wanted if isinstance(wanted, (list, tuple, set)) else [wanted]
        if key == "id" and not any(service["ID"].startswith(v) for v in values):
            return False
        if key == "name" and not any(service["Spec"]["Name"].startswith(v) for v in values):
            return False
        if key == "mode" and ("replicated" if "Replicated" in service["Spec"]["Mode"] else "global") not in values:
            return False
        if key == "label":
            labels = service["Spec"].get("Labels") or {}
            for value in values:
                name, sep, expected = value.partition("=")
                if name not in labels or (sep and labels[name] != expected):
                    return False
    return True


def list_services(engine, filters: dict | None = None) -> list[dict]:
    """Every service (Docker's ``Service`` objects with ``ServiceStatus``), sorted by name."""
    snap = store.snapshot(store.connect(engine))
    shown = [with_status(s, snap) for s in snap.services.values() if isinstance(s, dict) and _match_service(filters, s)]
    return sorted(shown, key=lambda s: s["Spec"]["Name"])


def inspect(engine, id_or_name: str) -> dict:
    snap = store.snapshot(store.connect(engine))
    return with_status(resolve(snap, id_or_name), snap)


def list_tasks(engine, filters: dict | None = None) -> list[dict]:
    """Tasks (Docker's ``Task`` objects) matching ``filters``: service, node, desired-state, id, label."""
    snap = store.snapshot(store.connect(engine))
    filters = filters or {}
    wanted_services = None
    if filters.get("service"):
        values = filters["service"] if isinstance(filters["service"], (list, tuple, set)) else [filters["service"]]
        wanted_services = {resolve(snap, v)["ID"] for v in values}
    wanted_nodes = None
    if filters.get("node"):
        from pallet.kernel.cluster.nodes import resolve as resolve_node

        values = filters["node"] if isinstance(filters["node"], (list, tuple, set)) else [filters["node"]]
        wanted_nodes = {resolve_node(engine, snap, v)["ID"] for v in values}
    shown = []
    for task in snap.tasks.values():
        if not isinstance(task, dict):
            continue
        if wanted_services is not None and task.get("ServiceID") not in wanted_services:
            continue
        if wanted_nodes is not None and task.get("NodeID") not in wanted_nodes:
            continue
        desired = filters.get("desired-state")
        if desired:
            values = desired if isinstance(desired, (list, tuple, set)) else [desired]
            if task["DesiredState"] not in values and not ("accepted" in values):
                continue
        if filters.get("id"):
            values = filters["id"] if isinstance(filters["id"], (list, tuple, set)) else [filters["id"]]
            if not any(task["ID"].startswith(v) for v in values):
                continue
        shown.append(task)
    return sorted(shown, key=lambda t: (t.get("ServiceID", ""), str(t.get("Slot") or t.get("NodeID", "")),
                                        t.get("CreatedAt", "")))
