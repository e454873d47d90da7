"""Swarm routes over the cluster store: ``/swarm`` (inspect only), ``/nodes``, ``/tasks``; the 503 outside a cluster.

A root that joined a cluster as a manager answers as a swarm manager does; one that has not
joined (or joined as a worker) answers 503 with Docker's words, so the docker CLI prints what
it prints against a daemon outside swarm mode. Records come from ``kernel/cluster`` as they are
stored: they already have Docker's shapes.
"""

from __future__ import annotations

import hashlib

from aiohttp import web

from pallet.kernel.api.common import blocking, json_body, json_response, query_bool, query_json
from pallet.kernel.api.errors import ApiError

NOT_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this '
               'node to swarm and try again.')
WORKER = ("This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run "
          "this command on a manager node or promote the current node to a manager.")
SECOND = 10**9
# Go decodes JSON into structs ignoring the case of keys, and clients rely on it (docker-py sends a
# mode as {"replicated": {"Replicas": 2}}): request specs are given Docker's spelling of every field
# name here, except inside the maps whose keys are the user's (labels, options, sysctls).
FIELD_NAMES = """Name Labels TaskTemplate ContainerSpec PluginSpec NetworkAttachmentSpec Resources RestartPolicy
    Placement Networks LogDriver ForceUpdate Runtime Mode Replicated Global ReplicatedJob GlobalJob Replicas
    MaxConcurrent TotalCompletions UpdateConfig RollbackConfig Parallelism Delay FailureAction Monitor
    MaxFailureRatio Order EndpointSpec Ports Protocol TargetPort PublishedPort PublishMode Image Command Args
    Hostname Env Dir User Groups Privileges TTY OpenStdin ReadOnly Mounts StopSignal StopGracePeriod Healthcheck
    Hosts DNSConfig Nameservers Search Secrets Configs Isolation Init Sysctls CapabilityAdd CapabilityDrop Ulimits
    Soft Hard Limits Reservations NanoCPUs MemoryBytes Pids GenericResources Condition MaxAttempts Window
    Constraints Preferences Spread SpreadDescriptor MaxReplicas Platforms Architecture OS Target Aliases DriverOpts
    Options Type Source Consistency BindOptions VolumeOptions TmpfsOptions Propagation NoCopy DriverConfig SizeBytes
    File UID GID SecretID SecretName ConfigID ConfigName Test Interval Timeout StartPeriod StartInterval Retries
    Role Availability Data Driver Templating""".split()
CANONICAL = {name.lower(): name for name in FIELD_NAMES}
USER_MAPS = {"Labels", "Options", "Sysctls", "DriverOpts"}


def canonical(value):
    """``value`` (a decoded request spec) with Docker's field names, matched regardless of case."""
    if isinstance(value, list):
        return [canonical(item) for item in value]
    if not isinstance(value, dict):
        return value
    result = {}
    for key, item in value.items():
        name = CANONICAL.get(str(key).lower(), key)
        result[name] = item if name in USER_MAPS else canonical(item)
    return result


def require_manager(engine) -> dict:
    """This root's membership, or the 503 Docker answers outside swarm mode (and on a worker)."""
    from pallet.kernel.cluster import nodes, store

    joined = store.membership(engine)
    if joined is None:
        raise ApiError(503, NOT_MANAGER)
    try:
        role = nodes.inspect_node(engine, joined["ID"])["Spec"]["Role"]
    except store.NotInCluster:
        raise ApiError(503, NOT_MANAGER) from None
    if role != "manager":
        raise ApiError(503, WORKER)
    return joined


def filters_of(request: web.Request) -> dict[str, list[str]]:
    from pallet.kernel.api.common import normalize_filters

    return normalize_filters(query_json(request, "filters", {}))


async def managed(request: web.Request, function, *args):
    """``function(engine, *args)`` off the loop, once this node is known to be a manager."""
    engine = request.app["engine"]

    def call():
        require_manager(engine)
        return function(engine, *args)

    return await blocking(call)


# --- /swarm and /info's Swarm -----------------------------------------------------------------
def cluster_object(engine) -> dict:
    """Docker's ``Swarm`` object: the id is derived from the etcd cluster's, the spec holds Docker's defaults."""
    from pallet.kernel.cluster import store

    etcd = store.connect(engine)
    snap = store.snapshot(etcd)
    header = etcd._call("/v3/maintenance/status", {}).get("header") or {}
    cluster_id = hashlib.sha256(f"pallet-swarm:{header.get('cluster_id', '')}".encode()).hexdigest()[:25]
    created = min((n.get("CreatedAt", "") for n in snap.nodes.values() if isinstance(n, dict)), default="")
    return {
        "ID": cluster_id, "Version": {"Index": snap.revision}, "CreatedAt": created,
        "UpdatedAt": max((n.get("UpdatedAt", "") for n in snap.nodes.values() if isinstance(n, dict)), default=created),
        "Spec": {"Name": "default", "Labels": {},
                 "Orchestration": {"TaskHistoryRetentionLimit": 5},
                 "Raft": {"SnapshotInterval": 10000, "KeepOldSnapshots": 0, "LogEntriesForSlowFollowers": 500,
                          "ElectionTick": 10, "HeartbeatTick": 1},
                 "Dispatcher": {"HeartbeatPeriod": 5 * SECOND},
                 "CAConfig": {"NodeCertExpiry": 90 * 24 * 3600 * SECOND},
                 "TaskDefaults": {}, "EncryptionConfig": {"AutoLockManagers": False}},
        "TLSInfo": {"TrustRoot": "", "CertIssuerSubject": "", "CertIssuerPublicKey": ""},
        "RootRotationInProgress": False, "DefaultAddrPool": ["10.0.0.0/8"], "SubnetSize": 24, "DataPathPort": 4789,
        "JoinTokens": {"Worker": "", "Manager": ""},
    }


def info_swarm(engine) -> dict:
    """``/info``'s ``Swarm``: inactive outside a cluster; else this node, the managers and the cluster."""
    from pallet.kernel.cluster import nodes, store
    from pallet.kernel.errors import PalletError

    inactive = {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False, "Error": "",
                "RemoteManagers": None}
    joined = store.membership(engine)
    if joined is None:
        return inactive
    try:
        every = nodes.list_nodes(engine)
        cluster = cluster_object(engine)
    except PalletError as exc:   # the cluster store is unreachable: Docker says "error" with the reason
        return dict(inactive, NodeID=joined["ID"], LocalNodeState="error", Error=str(exc))
    me = next((n for n in every if n["ID"] == joined["ID"]), None)
    managers = [n for n in every if n["Spec"].get("Role") == "manager"]
    manager = me is not None and me["Spec"].get("Role") == "manager"
    data = {"NodeID": joined["ID"], "NodeAddr": ((me or {}).get("Status") or {}).get("Addr", ""),
            "LocalNodeState": "active" if me is not None else "error", "ControlAvailable": manager,
            "Error": "" if me is not None else "this node was removed from the cluster",
            "RemoteManagers": [{"NodeID": n["ID"], "Addr": (n.get("ManagerStatus") or {}).get("Addr", "")}
                               for n in managers]}
    if manager:
        data.update(Nodes=len(every), Managers=len(managers),
                    Cluster={k: v for k, v in cluster.items() if k != "JoinTokens"})
    return data


async def swarm_inspect(request: web.Request):
    return json_response(await managed(request, cluster_object))


async def swarm_unsupported(request: web.Request):
    """init, join, leave, update, unlock: pallet nodes join a cluster store with ``pallet node join``."""
    engine = request.app["engine"]
    from pallet.kernel.cluster import store

    if await blocking(store.membership, engine) is None:
        raise ApiError(503, NOT_MANAGER + ' (pallet joins a cluster with "pallet node join --cluster-store '
                                          'etcd://HOST:PORT")')
    raise ApiError(503, 'This node is already part of a swarm. Use "pallet node rm --force self" to leave it; '
                        "the cluster itself lives in its etcd store")


# --- /nodes ---------------------------------------------------------------------------------
async def nodes_list(request: web.Request):
    from pallet.kernel.cluster import nodes

    return json_response(await managed(request, nodes.list_nodes, filters_of(request)))


async def node_inspect(request: web.Request):
    from pallet.kernel.cluster import nodes

    return json_response(await managed(request, nodes.inspect_node, request.match_info["id"]))


def _version(request: web.Request) -> int:
    raw = request.query.get("version", "")
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"invalid version '{raw}': the object's Version.Index is required") from None


async def node_update(request: web.Request):
    from pallet.kernel.cluster import nodes

    version = _version(request)
    spec = canonical(await json_body(request))

    def update(engine, ref):
        current = nodes.inspect_node(engine, ref)
        if current["Version"]["Index"] != version:
            raise ApiError(500, "update out of sequence")
        nodes.update_node(engine, current["ID"], spec=spec)

    await managed(request, update, request.match_info["id"])
    return web.Response(status=200)


async def node_delete(request: web.Request):
    from pallet.kernel.cluster import nodes

    await managed(request, nodes.remove_node, request.match_info["id"], query_bool(request, "force"))
    return web.Response(status=200)


# --- /tasks ---------------------------------------------------------------------------------
def _tasks(engine, filters: dict[str, list[str]]) -> list[dict]:
    """Tasks by Docker's filters: those ``list_tasks`` knows, then ``name`` (``service.slot``) and ``label``."""
    from pallet.kernel.cluster import services

    names, labels = filters.pop("name", None), filters.pop("label", None)
    tasks = services.list_tasks(engine, filters)
    if names:
        by_id = {s["ID"]: s["Spec"]["Name"] for s in services.list_services(engine)}
        tasks = [t for t in tasks if any(f"{by_id.get(t.get('ServiceID'), '')}.{t.get('Slot') or t.get('NodeID')}"
                                         .startswith(n) for n in names)]
    for label in labels or ():
        key, sep, value = label.partition("=")
        tasks = [t for t in tasks if key in (t.get("Labels") or {}) and (not sep or t["Labels"][key] == value)]
    return tasks


async def tasks_list(request: web.Request):
    return json_response(await managed(request, _tasks, filters_of(request)))


async def task_inspect(request: web.Request):
    from pallet.kernel.errors import NotFound

    wanted = request.match_info["id"]

    def find(engine):
        tasks = _tasks(engine, {"id": [wanted]})
        exact = [t for t in tasks if t["ID"] == wanted]
        if exact or len(tasks) == 1:
            return (exact or tasks)[0]
        raise NotFound(f"task {wanted} not found")

    return json_response(await managed(request, find))


ROUTES = [
    ("GET", "/swarm", swarm_inspect),
    ("POST", "/swarm/{action:init|join|leave|update|unlock}", swarm_unsupported),
    ("GET", "/swarm/unlockkey", swarm_unsupported),
    ("GET", "/nodes", nodes_list),
    ("GET", "/nodes/{id}", node_inspect),
    ("POST", "/nodes/{id}/update", node_update),
    ("DELETE", "/nodes/{id}", node_delete),
    ("GET", "/tasks", tasks_list),
    ("GET", "/tasks/{id}", task_inspect),
]
