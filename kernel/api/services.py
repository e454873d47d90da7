"""Service routes: list, create, inspect, update (and roll back), delete, and the logs of a service's tasks.

A thin translation over ``kernel/cluster/services``, the functions ``pallet service`` and
``pallet stack`` call. Logs are gathered from every node by ``kernel/cluster/logs`` (this node's
task containers from their files, the others' from their agents), each line carrying the details
the docker CLI parses for its ``service.slot.task@node |`` prefix.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

from pallet.kernel.api.common import blocking, json_body, json_response, query_bool
from pallet.kernel.api.errors import ApiError
from pallet.kernel.api.swarm import canonical, filters_of, managed


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
def _details(task: dict) -> str:
    from urllib.parse import quote

    pairs = {"com.docker.swarm.node.id": task.get("NodeID", ""), "com.docker.swarm.service.id": task["ServiceID"],
             "com.docker.swarm.task.id": task["ID"]}
    return ",".join(f"{key}={quote(value, safe='')}" for key, value in pairs.items())


async def service_logs(request: web.Request):
    import threading

    from pallet.kernel.api.streams import STDERR, STDOUT, frame
    from pallet.kernel.cluster import logs, services
    from pallet.kernel.policyopts import log_time

    engine = request.app["engine"]
    service = await managed(request, services.inspect, request.match_info["id"])
    tail_text = request.query.get("tail", "all")
    tail = None if tail_text in ("all", "") or tail_text.startswith("-") else int(tail_text)
    since = float(request.query["since"]) if request.query.get("since", "0") not in ("0", "") else None
    wanted = {"stdout": query_bool(request, "stdout"), "stderr": query_bool(request, "stderr")}
    stamps, details, follow = query_bool(request, "timestamps"), query_bool(request, "details"), query_bool(request, "follow")
    tty = bool(service["Spec"]["TaskTemplate"]["ContainerSpec"].get("TTY"))
    loop, arrived, stop = asyncio.get_running_loop(), asyncio.Queue(), threading.Event()

    def produce() -> None:
        """Every node's entries (``logs.gather``), handed to the response as they come."""
        try:
            for item in logs.gather(engine, service["ID"], tail, follow, lambda message: None, stop):
                loop.call_soon_threadsafe(arrived.put_nowait, item)
        except Exception as exc:  # the stream ends; the reason goes where the agent's errors go
            print(f"pallet: service logs: {exc}", file=sys.stderr)
        finally:
            loop.call_soon_threadsafe(arrived.put_nowait, None)

    response = web.StreamResponse(headers={"Content-Type": "application/vnd.docker.raw-stream" if tty
                                           else "application/vnd.docker.multiplexed-stream"})
    await response.prepare(request)
    threading.Thread(target=produce, daemon=True, name="service-logs").start()
    try:
        while (item := await arrived.get()) is not None:
            task, _node, stream, stamp, text = item
            if not wanted.get(stream) or (since is not None and log_time(stamp) < since):
                continue
            line = (f"{_details(task)} {text}" if details else text)
            data = (f"{stamp} {line}" if stamps else line).encode()
            await response.write(data if tty else frame(STDOUT if stream == "stdout" else STDERR, data))
    finally:
        stop.set()
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
