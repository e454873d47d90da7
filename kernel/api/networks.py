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
    pools = [p or {} for p in ipam.get("Config") or []]
    from pallet.kernel.cli.network import INGRESS, split_families
    from pallet.kernel.errors import UsageError

    try:
        split = split_families([p["Subnet"] for p in pools if p.get("Subnet")],
                               [p["Gateway"] for p in pools if p.get("Gateway")],
                               [p["IPRange"] for p in pools if p.get("IPRange")])
    except UsageError as exc:
        raise ApiError(400, str(exc).replace(" --", " ")) from None
    if len(pools) > 2:
        raise ApiError(400, "pallet networks take one IPAM pool of each family (one IPv4, one IPv6 subnet)")
    aux = {k: v for p in pools for k, v in (p.get("AuxiliaryAddresses") or {}).items()}
    if body.get("Ingress"):
        raise ApiError(400, INGRESS.removeprefix("--ingress: "))
    if body.get("EnableIPv4") is False:
        raise ApiError(400, "EnableIPv4 false: pallet's network drivers need an IPv4 subnet on every network")
    config_only = bool(body.get("ConfigOnly"))
    record = _networks(engine).create(
        name, "null" if config_only else body.get("Driver") or "bridge", **split,
        ipv6=bool(body.get("EnableIPv6")), internal=bool(body.get("Internal")), labels=body.get("Labels") or {},
        options=body.get("Options") or {}, ipam_driver=ipam.get("Driver") or "default",
        ipam_options=ipam.get("Options") or {}, aux_addresses=aux,
        scope=body.get("Scope") or "", config_only=config_only,
        config_from=(body.get("ConfigFrom") or {}).get("Network") or "")
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


def _primary(engine, record, network_name: str) -> bool:
    """Whether ``network_name`` is the network a created container joins when it starts."""
    if record.running:
        return False
    net = _networks(engine).get(network_name)
    return record.network_mode in (net.name, net.id)


def _connect(engine, network_name: str, body: dict) -> None:
    from pallet.kernel.api.containers import _get, _store
    from pallet.kernel.cli.network import _record_attachment, _use_embedded_dns, resolve_links
    from pallet.kernel.network.attach import connect, sandbox_of

    endpoint = body.get("EndpointConfig") or {}
    aliases = list(endpoint.get("Aliases") or [])
    ip = (endpoint.get("IPAMConfig") or {}).get("IPv4Address") or ""
    ip6 = (endpoint.get("IPAMConfig") or {}).get("IPv6Address") or ""
    from pallet.kernel.runopts import parse_link_local

    link_local_ips = parse_link_local((endpoint.get("IPAMConfig") or {}).get("LinkLocalIPs") or [])
    record = _get(engine, body.get("Container") or "")
    if _primary(engine, record, network_name):
        # Not started yet: it joins this network at start; the aliases are kept for then (docker-compose).
        host = record.host_config
        host["NetworkAliases"] = sorted(set(host.get("NetworkAliases") or []) | set(aliases))
        if ip:
            host["IPv4Address"] = ip
        _store(engine).save(record)
        return
    if not record.running:
        raise ApiError(400, f"container {record.name} is not running: pallet connects a created container only to "
                            "the network it was created on")
    if record.network_mode in ("none", "host") or record.network_mode.startswith("container:"):
        raise ApiError(400, f"container {record.name} uses network mode {record.network_mode} "
                            "and cannot be connected to other networks")
    record, sandbox = sandbox_of(engine, record.id)
    result = connect(engine, record, sandbox, network=network_name, aliases=aliases, ip=ip, ip6=ip6,
                     link_local_ips=link_local_ips,
                     links=resolve_links(engine, endpoint.get("Links") or []),
                     driver_opts=endpoint.get("DriverOpts") or {})
    _record_attachment(engine, record, result)
    _use_embedded_dns(engine, record, result)


def _disconnect(engine, network_name: str, body: dict) -> None:
    from pallet.kernel.api.containers import _get, _store

    record = _get(engine, body.get("Container") or "")
    if _primary(engine, record, network_name):
        return  # nothing is attached before the start (docker-compose disconnects, then connects with aliases)
    store = _networks(engine)
    net = store.get(network_name)
    if not store.disconnect(record.id, net.id) and not body.get("Force"):
        raise ApiError(400, f"container {record.id[:12]} is not connected to network {net.name}")
    record.network = {**record.network, "Networks": {k: v for k, v in record.network.get("Networks", {}).items()
                                                     if k != net.name}}
    _store(engine).save(record)


async def connect_network(request: web.Request):
    body = _object(await json_body(request), "connect")
    await blocking(_connect, request.app["engine"], request.match_info["id"], body)
    return web.Response(status=200)


async def disconnect_network(request: web.Request):
    body = _object(await json_body(request), "disconnect")
    await blocking(_disconnect, request.app["engine"], request.match_info["id"], body)
    return web.Response(status=200)


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


async def update_volume(request: web.Request):
    """Docker's ``PUT /volumes/{name}`` updates cluster (CSI) volumes, which pallet has not: Docker's 503 off swarm."""
    raise ApiError(503, "volume update only valid for cluster volumes, but swarm is unavailable")


ROUTES = [
    ("POST", "/networks/create", create_network),
    ("GET", "/networks", list_networks),
    ("GET", "/networks/{id}", inspect_network),
    ("DELETE", "/networks/{id}", remove_network),
    ("POST", "/networks/{id}/connect", connect_network),
    ("POST", "/networks/{id}/disconnect", disconnect_network),
    ("POST", "/volumes/create", create_volume),
    ("GET", "/volumes", list_volumes),
    ("GET", "/volumes/{name}", inspect_volume),
    ("DELETE", "/volumes/{name}", remove_volume),
    ("PUT", "/volumes/{name}", update_volume),
]
