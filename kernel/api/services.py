"""Service routes: list, create, inspect, update (and roll back), delete, and the logs of a service's tasks.

A thin translation over ``kernel/cluster/services``, the functions ``pallet service`` and
``pallet stack`` call. Logs are read from the task containers that run on this node (their
json-file logs, as ``/containers/{id}/logs`` reads them), each line carrying the details the
docker CLI parses for its ``service.slot.task@node |`` prefix.
"""

from __future__ import annotations

import asyncio
import heapq

from aiohttp import web

from pallet.kernel.api.common import blocking, json_body, json_response, query_bool
from pallet.kernel.api.errors import ApiError
from pallet.kernel.api.swarm import canonical, filters_of, managed

TASK_LABEL = "com.docker.swarm.task.id"


async def services_list(request: web.Request):
    from pallet.kernel.cluster import services

    found = await managed(request, services.list_services, filters_of(request))
    if not query_bool(request, "status"):
        found = [{k: v for k, v in s.items() if k != "ServiceStatus"} for s in found]
    return json_response(found)


async def service_create(request: web.Request):
    from pallet.kernel.cluster import services

    spec = canonical(await json_body(request))
    service_id = await managed(request, services.create, spec)
    return json_response({"ID": service_id}, status=201)


async def service_inspect(request: web.Request):
    from pallet.kernel.cluster import services

    service = await managed(request, services.inspect, request.match_info["id"])
    return json_response({k: v for k, v in service.items() if k != "ServiceStatus"})


async def service_update(request: web.Request):
    from pallet.kernel.cluster import services

    raw = request.query.get("version", "")
    try:
        version = int(raw)
    except ValueError:
        raise ApiError(400, f"invalid service version '{raw}': the service's Version.Index is required") from None
    rollback = request.query.get("rollback") == "previous"
    spec = canonical(await json_body(request))

    def update(engine, ref):
        current = services.inspect(engine, ref)
        if current["Version"]["Index"] != version:
            raise ApiError(500, "update out of sequence")
        services.update(engine, current["ID"], None if rollback else spec, rollback=rollback)

    await managed(request, update, request.match_info["id"])
    return json_response({"Warnings": None})


async def service_delete(request: web.Request):
    from pallet.kernel.cluster import services

    await managed(request, services.remove, request.match_info["id"])
    return web.Response(status=200)


# --- logs -------------------------------------------------------------------------------
def _task_containers(engine, service_id: str) -> dict[str, tuple[dict, object]]:
    """Task id -> (task, container record) for the service's tasks whose container is on this node."""
    from pallet.kernel.cluster import services
    from pallet.kernel.containers import ContainerStore

    tasks = {t["ID"]: t for t in services.list_tasks(engine, {"service": [service_id]})}
    found = {}
    for record in ContainerStore(engine).all():
        labels = record.labels or record.config.get("Labels") or {}
        task_id = labels.get(TASK_LABEL)
        if task_id in tasks:
            found[task_id] = (tasks[task_id], record)
    return found


def _details(task: dict) -> str:
    from urllib.parse import quote

    pairs = {"com.docker.swarm.node.id": task.get("NodeID", ""), "com.docker.swarm.service.id": task["ServiceID"],
             "com.docker.swarm.task.id": task["ID"]}
    return ",".join(f"{key}={quote(value, safe='')}" for key, value in pairs.items())


async def service_logs(request: web.Request):
    from pallet.kernel.api.containers import _LogReader, _log_entries, _store
    from pallet.kernel.api.streams import STDERR, STDOUT, frame
    from pallet.kernel.cluster import services
    from pallet.kernel.errors import NotFound

    engine = request.app["engine"]
    service = await managed(request, services.inspect, request.match_info["id"])
    tail_text = request.query.get("tail", "all")
    tail = None if tail_text in ("all", "") or tail_text.startswith("-") else int(tail_text)
    since = float(request.query["since"]) if request.query.get("since", "0") not in ("0", "") else None
    wanted = {"stdout": query_bool(request, "stdout"), "stderr": query_bool(request, "stderr")}
    stamps, details = query_bool(request, "timestamps"), query_bool(request, "details")
    tty = bool(service["Spec"]["TaskTemplate"]["ContainerSpec"].get("TTY"))
    readers: dict[str, tuple[dict, _LogReader]] = {}

    def collect() -> list[tuple] | None:
        """New entries of every task container on this node, in time order (None once the service is gone)."""
        try:
            containers = _task_containers(engine, service["ID"])
        except NotFound:
            return None
        lines = []
        for task_id, (task, record) in containers.items():
            if task_id not in readers:
                readers[task_id] = (task, _LogReader(_store(engine).log_path(record.id)))
                entries = _log_entries(engine, record, readers[task_id][1], tail, since, None)
            else:
                entries = readers[task_id][1].read()
            lines.append([(stamp, stream, text, readers[task_id][0]) for stream, stamp, text in entries])
        return list(heapq.merge(*lines, key=lambda entry: entry[0]))

    response = web.StreamResponse(headers={"Content-Type": "application/vnd.docker.raw-stream" if tty
                                           else "application/vnd.docker.multiplexed-stream"})
    try:
        entries = await blocking(collect) or []
        await response.prepare(request)
        while entries is not None:
            for stamp, stream, text, task in entries:
                if not wanted.get(stream):
                    continue
                line = (f"{_details(task)} {text}" if details else text)
                line = f"{stamp} {line}" if stamps else line
                data = line.encode()
                await response.write(data if tty else frame(STDOUT if stream == "stdout" else STDERR, data))
            if not query_bool(request, "follow"):
                break
            await asyncio.sleep(0.2)
            entries = await blocking(collect)
    finally:
        for _task, reader in readers.values():
            reader.close()
    await response.write_eof()
    return response


ROUTES = [
    ("GET", "/services", services_list),
    ("POST", "/services/create", service_create),
    ("GET", "/services/{id}", service_inspect),
    ("POST", "/services/{id}/update", service_update),
    ("DELETE", "/services/{id}", service_delete),
    ("GET", "/services/{id}/logs", service_logs),
]
