"""Container routes that act on a container's processes and files: pause, unpause, top, changes, export,
update, resize.

Each calls what the CLI command calls (``freeze``, ``top_lines``, the storage driver's ``changes``,
``export_rootfs``, ``update_container``); a running container's terminal is resized through the
pty master its monitor hands to attach clients.
"""

from __future__ import annotations

import os

from aiohttp import web

from pallet.kernel.api.common import blocking, json_body, json_response
from pallet.kernel.api.containers import record_of
from pallet.kernel.api.errors import ApiError
from pallet.kernel.errors import Conflict

CHANGE_KINDS = {"C": 0, "A": 1, "D": 2}   # Docker's numbering: modified, added, deleted


async def pause(request: web.Request):
    from pallet.kernel.cli.container import freeze

    record = await record_of(request)
    await blocking(freeze, request.app["engine"], record, True)
    return web.Response(status=204)


async def unpause(request: web.Request):
    from pallet.kernel.cli.container import freeze

    record = await record_of(request)
    await blocking(freeze, request.app["engine"], record, False)
    return web.Response(status=204)


def _running(record) -> None:
    if not record.running:
        raise Conflict(f"Container {record.id} is not running")


def _top(record, ps_args: str) -> dict:
    from pallet.kernel.cli.container_ops import top_lines

    _running(record)
    header, *lines = top_lines(record, ps_args.split())
    titles = header.split()
    processes = []
    for line in lines:
        fields = line.split()
        # the last column (CMD) may hold spaces: everything from there on is one field, as Docker splits it
        processes.append(fields[:len(titles) - 1] + [" ".join(fields[len(titles) - 1:])])
    return {"Titles": titles, "Processes": processes}


async def top(request: web.Request):
    record = await record_of(request)
    return json_response(await blocking(_top, record, request.query.get("ps_args") or ""))


def _changes(engine, record) -> list[dict]:
    engine.plugins.load("storage")
    return [{"Path": change.path, "Kind": CHANGE_KINDS[change.kind]}
            for change in engine.storage.changes(record.id, record.image_top_layer)]


async def changes(request: web.Request):
    record = await record_of(request)
    return json_response(await blocking(_changes, request.app["engine"], record))


async def export(request: web.Request):
    from pallet.kernel.api.tarstream import stream_response
    from pallet.kernel.cli.container_ops import export_rootfs

    engine = request.app["engine"]
    record = await record_of(request)
    engine.plugins.load("storage")
    response = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
    return await stream_response(request, response, lambda target: export_rootfs(engine, record, target))


# --- update and resize ---------------------------------------------------------------------

RESOURCE_KEYS = ("CpuShares", "Memory", "NanoCpus", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod",
                 "CpuRealtimeRuntime", "CpusetCpus", "CpusetMems", "MemoryReservation", "MemorySwap",
                 "BlkioWeight")


def update_changes(body: dict) -> dict:
    """The HostConfig fields an update body changes. As Docker reads it, a zero or empty field is left
    as it is (the docker CLI sends every field); ``PidsLimit`` 0 or -1 means unlimited."""
    from pallet.kernel import policyopts

    if not isinstance(body, dict):
        raise ApiError(400, "invalid JSON: the update body must be an object")
    changes = {}
    for key in RESOURCE_KEYS:
        value = body.get(key)
        if value in (None, 0, ""):
            continue
        if key in ("CpusetCpus", "CpusetMems") and not isinstance(value, str) or \
                key not in ("CpusetCpus", "CpusetMems") and (not isinstance(value, int) or isinstance(value, bool)):
            raise ApiError(400, f"json: cannot unmarshal {type(value).__name__} into Go struct field "
                                f"UpdateConfig.{key}")
        changes[key] = value
    if body.get("PidsLimit") is not None:
        changes["PidsLimit"] = body["PidsLimit"] if body["PidsLimit"] > 0 else None
    policy = body.get("RestartPolicy") or {}
    if policy.get("Name"):
        count = policy.get("MaximumRetryCount") or 0
        changes["RestartPolicy"] = policyopts.parse_restart(
            policy["Name"] + (f":{count}" if count and policy["Name"] == "on-failure" else ""))
    if changes.get("NanoCpus") and (changes.get("CpuPeriod") or changes.get("CpuQuota")):
        raise ApiError(400, "Conflicting options: Nano CPUs and CPU Period/Quota cannot both be set")
    return changes


async def update(request: web.Request):
    from pallet.kernel.cli.container_update import update_container

    from pallet.kernel.cgroups import discard_unsupported_weight

    changes = update_changes(await json_body(request))
    record = await record_of(request)
    warnings = discard_unsupported_weight(changes)
    await blocking(update_container, request.app["engine"], record, changes)
    return json_response({"Warnings": warnings})


def _dimension(request: web.Request, name: str) -> int:
    value = request.query.get(name, "")
    try:
        number = int(value)
    except ValueError:
        raise ApiError(400, f"invalid {name}: {value!r}") from None
    if not 0 <= number <= 0xFFFF:
        raise ApiError(400, f"invalid {name}: {value!r}")
    return number


def _resize(engine, record, height: int, width: int) -> None:
    """Set the window size on the container's pty (its monitor hands the master to attach clients)."""
    import fcntl
    import struct
    import termios

    from pallet.kernel.api.containers import _connect_monitor

    _running(record)
    if not record.config.get("Tty"):
        return  # no terminal: nothing to size, as Docker accepts it
    sock, master = _connect_monitor(engine, record.id)
    try:
        if master is not None:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
    finally:
        if master is not None:
            os.close(master)
        sock.close()


async def resize(request: web.Request):
    height, width = _dimension(request, "h"), _dimension(request, "w")
    record = await record_of(request)
    await blocking(_resize, request.app["engine"], record, height, width)
    return web.Response(status=200)


ROUTES = [
    ("POST", "/containers/{id}/pause", pause),
    ("POST", "/containers/{id}/unpause", unpause),
    ("GET", "/containers/{id}/top", top),
    ("GET", "/containers/{id}/changes", changes),
    ("GET", "/containers/{id}/export", export),
    ("POST", "/containers/{id}/update", update),
    ("POST", "/containers/{id}/resize", resize),
]
