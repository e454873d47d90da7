"""System routes: ``/_ping``, ``/version``, ``/info``, in Docker's shapes."""

from __future__ import annotations

import asyncio
import json
import os
import threading

from aiohttp import web

from pallet.kernel.api.common import blocking, json_response, normalize_filters, query_json
from pallet.kernel.api.errors import ApiError


async def ping(request: web.Request):
    response = web.Response(text="" if request.method == "HEAD" else "OK", content_type="text/plain")
    response.headers["Cache-Control"] = "no-cache, no-store, must-revalidate"
    response.headers["Pragma"] = "no-cache"
    response.headers["Builder-Version"] = "1"
    return response


def version_data() -> dict:
    from pallet.kernel.cli.system import docker_version

    return docker_version()["Server"]


async def version(request: web.Request):
    return json_response(version_data())


def info_data(engine) -> dict:
    """``pallet info``'s data, with the fields the docker CLI and docker-py read under Docker's names."""
    from pallet.kernel.api.swarm import info_swarm
    from pallet.kernel.cli.system import info_data as pallet_info

    data = pallet_info(engine)
    storage = data.get("Storage") or {}
    return {
        **{k: v for k, v in data.items() if k in (
            "Containers", "ContainersRunning", "ContainersPaused", "ContainersStopped", "Images", "ServerVersion",
            "CgroupDriver", "CgroupVersion", "KernelVersion", "OperatingSystem", "OSType", "Architecture",
            "NCPU", "MemTotal", "Name", "IndexServerAddress", "SecurityOptions", "Warnings")},
        "ID": "", "Driver": storage.get("Driver") or "",
        "DriverStatus": [[str(k), str(v)] for k, v in storage.get("Status") or []],
        "DockerRootDir": data["RootDir"], "OSVersion": "", "LoggingDriver": "json-file",
        "Plugins": {"Volume": ["local"], "Network": data["Networks"], "Authorization": None,
                    "Log": ["json-file", "none"]},
        "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True,
        "CPUSet": True, "PidsLimit": True, "IPv4Forwarding": True, "Debug": False, "NFd": len(os.listdir("/proc/self/fd")),
        "NGoroutines": 0, "SystemTime": __import__("datetime").datetime.now().astimezone().isoformat(),
        "NEventsListener": 0, "HttpProxy": "", "HttpsProxy": "", "NoProxy": "", "Labels": [],
        "ExperimentalBuild": False, "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "",
        "DefaultRuntime": "pallet", "Runtimes": {"pallet": {"path": "pallet"}},
        "Swarm": info_swarm(engine),
        "RegistryConfig": {**data["RegistryConfig"], "IndexConfigs": {}},
        "ContainerdCommit": {"ID": ""}, "RuncCommit": {"ID": ""}, "InitCommit": {"ID": ""},
    }


async def info(request: web.Request):
    return json_response(await blocking(info_data, request.app["engine"]))


def _time(request: web.Request, name: str) -> float | None:
    from pallet.kernel import events

    value = request.query.get(name)
    if not value:
        return None
    try:
        return events.parse_time(value)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


async def events_stream(request: web.Request):
    """``GET /events``: the journal (``kernel.events``) as Docker's JSON messages, followed until ``until``."""
    from pallet.kernel import events

    engine = request.app["engine"]
    filters = normalize_filters(query_json(request, "filters", {}))
    for key in filters:
        if key not in events.FILTER_KEYS:
            raise ApiError(400, f"invalid filter '{key}'")
    since, until = _time(request, "since"), _time(request, "until")
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()

    def tail():
        # A daemon thread, not the executor: a follower waits for events indefinitely and must not hold
        # up the server's exit; it ends at the next event once its client is gone.
        try:
            for event in events.follow(engine, since, until, filters):
                if stop.is_set():
                    return
                loop.call_soon_threadsafe(queue.put_nowait, event)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    threading.Thread(target=tail, name="pallet-api-events", daemon=True).start()
    try:
        while True:
            event = await queue.get()
            if event is None:
                break
            await response.write(json.dumps(event).encode() + b"\n")
    finally:
        stop.set()
    await response.write_eof()
    return response


ROUTES = [
    ("GET", "/events", events_stream),
    ("GET", "/_ping", ping),
    ("HEAD", "/_ping", ping),
    ("GET", "/version", version),
    ("GET", "/info", info),
]
