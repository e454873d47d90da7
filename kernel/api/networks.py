"""Network and volume routes: create, list, inspect, delete, over ``NetworkStore`` and ``VolumeStore``."""

from __future__ import annotations

from aiohttp import web

from pallet.kernel.api.common import blocking, json_body, json_response, query_bool, query_json
from pallet.kernel.api.errors import ApiError


def _networks(engine):
    from pallet.kernel.network.store import NetworkStore

    engine.plugins.load("network")
    return NetworkStore(engine)


def _volumes(engine):
    from pallet.kernel.volumes import VolumeStore

    return VolumeStore(engine)


def _object(body, what: str) -> dict:
    if not isinstance(body, dict):
        raise ApiError(400, f"invalid JSON: the {what} body must be an object")
    return body


# --- networks ---------------------------------------------------------------------------

def _create_network(engine, body: dict) -> str:
    name = body.get("Name")
    if not name or not isinstance(name, str):
        raise ApiError(400, "network name must not be empty")
    ipam = body.get("IPAM") or {}
    pools = ipam.get("Config") or [{}]
    if len(pools) > 1:
        raise ApiError(400, "pallet networks take one IPAM pool (one subnet)")
    pool = pools[0] or {}
    record = _networks(engine).create(
        name, body.get("Driver") or "bridge", subnet=pool.get("Subnet") or "", gateway=pool.get("Gateway") or "",
        ip_range=pool.get("IPRange") or "", internal=bool(body.get("Internal")), labels=body.get("Labels") or {},
        options=body.get("Options") or {}, ipam_driver=ipam.get("Driver") or "default",
        ipam_options=ipam.get("Options") or {})
    return record.id


async def create_network(request: web.Request):
    body = _object(await json_body(request), "network")
    network_id = await blocking(_create_network, request.app["engine"], body)
    return json_response({"Id": network_id, "Warning": ""}, status=201)


def _network_matches(record, filters: dict) -> bool:
    for key, values in (filters or {}).items():
        values = list(values)
        if key == "name" and not any(v in record.name for v in values):
            return False
        if key == "id" and not any(record.id.startswith(v) for v in values):
            return False
        if key == "driver" and record.driver not in values:
            return False
        if key == "label" and not all(
                (v.partition("=")[0] in record.labels and (not v.partition("=")[2]
                                                             or record.labels[v.partition("=")[0]] == v.partition("=")[2]))
                for v in values):
            return False
    return True


async def list_networks(request: web.Request):
    engine = request.app["engine"]
    filters = query_json(request, "filters", {})

    def views():
        store = _networks(engine)
        return [store.inspect(r) for r in store.all() if _network_matches(r, filters)]

    return json_response(await blocking(views))


async def inspect_network(request: web.Request):
    engine = request.app["engine"]

    def view():
        store = _networks(engine)
        return store.inspect(store.get(request.match_info["id"]))

    return json_response(await blocking(view))


async def remove_network(request: web.Request):
    engine = request.app["engine"]
    await blocking(lambda: _networks(engine).remove(request.match_info["id"]))
    return web.Response(status=204)


# --- volumes ----------------------------------------------------------------------------

async def create_volume(request: web.Request):
    from pallet.kernel.cli.volume import inspect_data

    engine = request.app["engine"]
    body = _object(await json_body(request), "volume")

    def create():
        store = _volumes(engine)
        record = store.create(body.get("Name") or None, body.get("Driver") or "local", body.get("DriverOpts") or {},
                              body.get("Labels") or {})
        return inspect_data(store, record)

    return json_response(await blocking(create), status=201)


async def list_volumes(request: web.Request):
    from pallet.kernel.cli.volume import inspect_data

    engine = request.app["engine"]
    filters = query_json(request, "filters", {})

    def views():
        store = _volumes(engine)
        result = []
        for record in store.all():
            names = (filters or {}).get("name")
            if names and not any(n in record.name for n in names):
                continue
            result.append(inspect_data(store, record))
        return {"Volumes": result, "Warnings": None}

    return json_response(await blocking(views))


async def inspect_volume(request: web.Request):
    from pallet.kernel.cli.volume import inspect_data

    engine = request.app["engine"]

    def view():
        store = _volumes(engine)
        return inspect_data(store, store.get(request.match_info["name"]))

    return json_response(await blocking(view))


async def remove_volume(request: web.Request):
    engine = request.app["engine"]
    name = request.match_info["name"]
    force = query_bool(request, "force")

    def remove():
        store = _volumes(engine)
        store.get(name)  # a missing volume is a 404 even with force
        store.remove(name, force=force)

    await blocking(remove)
    return web.Response(status=204)


ROUTES = [
    ("POST", "/networks/create", create_network),
    ("GET", "/networks", list_networks),
    ("GET", "/networks/{id}", inspect_network),
    ("DELETE", "/networks/{id}", remove_network),
    ("POST", "/volumes/create", create_volume),
    ("GET", "/volumes", list_volumes),
    ("GET", "/volumes/{name}", inspect_volume),
    ("DELETE", "/volumes/{name}", remove_volume),
]
