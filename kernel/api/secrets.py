"""``/secrets`` over this root's secrets (its own store, or its cluster's once joined) and ``/configs`` over the cluster's configs.

Docker serves both only in swarm mode; pallet has secrets without swarm (``kernel/secrets.py``),
so ``docker secret ls/create/inspect/rm`` work against any pallet node. A secret's value never
leaves the store through the API, as in Docker. Configs are cluster objects (``kernel/cluster/configs.py``)
and answer 503 outside a cluster.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timezone

from aiohttp import web

from pallet.kernel.api.common import blocking, json_body, json_response
from pallet.kernel.api.errors import ApiError
from pallet.kernel.api.swarm import filters_of, managed


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def secret_object(record) -> dict:
    return {"ID": record.id, "Version": {"Index": int(record.updated * 1000)}, "CreatedAt": _when(record.created),
            "UpdatedAt": _when(record.updated), "Spec": {"Name": record.name, "Labels": record.labels or {}}}


def _matches(filters: dict[str, list[str]], object_id: str, name: str, labels: dict) -> bool:
    for key, values in filters.items():
        if key == "id" and not any(object_id.startswith(v) for v in values):
            return False
        if key == "name" and not any(name.startswith(v) for v in values):
            return False
        if key == "names" and name not in values:
            return False
        if key == "label":
            for value in values:
                label, sep, expected = value.partition("=")
                if label not in labels or (sep and labels[label] != expected):
                    return False
    return True


def _data(body: dict) -> bytes:
    if body.get("Driver") and (body["Driver"].get("Name") if isinstance(body["Driver"], dict) else True):
        raise ApiError(400, "secret and config drivers are not supported: the value goes in Data")
    try:
        return base64.b64decode(body.get("Data") or "", validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid Data: expected base64") from None


# --- secrets ------------------------------------------------------------------------------
async def secrets_list(request: web.Request):
    from pallet.kernel.secrets import open_store

    wanted = filters_of(request)
    records = await blocking(lambda: open_store(request.app["engine"]).all())
    return json_response([secret_object(r) for r in records if _matches(wanted, r.id, r.name, r.labels or {})])


async def secret_create(request: web.Request):
    from pallet.kernel.secrets import open_store

    body = await json_body(request)
    value = _data(body)
    record = await blocking(lambda: open_store(request.app["engine"]).create(body.get("Name") or "", value,
                                                                              body.get("Labels") or {}))
    return json_response({"ID": record.id}, status=201)


async def secret_inspect(request: web.Request):
    from pallet.kernel.secrets import open_store

    record = await blocking(lambda: open_store(request.app["engine"]).get(request.match_info["id"]))
    return json_response(secret_object(record))


async def secret_update(request: web.Request):
    from pallet.kernel.secrets import open_store

    body = await json_body(request)
    store = open_store(request.app["engine"])

    def update():
        record = store.get(request.match_info["id"])
        if body.get("Name", record.name) != record.name or body.get("Data"):
            raise ApiError(400, "only updates to Labels are allowed")
        store.set_labels(record.id, body.get("Labels") or {})

    await blocking(update)
    return web.Response(status=200)


async def secret_delete(request: web.Request):
    from pallet.kernel.secrets import open_store

    await blocking(lambda: open_store(request.app["engine"]).remove(request.match_info["id"]))
    return web.Response(status=204)


# --- configs ------------------------------------------------------------------------------
async def configs_list(request: web.Request):
    from pallet.kernel.cluster import configs

    return json_response(await managed(request, configs.list_configs, filters_of(request)))


async def config_create(request: web.Request):
    from pallet.kernel.cluster import configs

    body = await json_body(request)
    value = _data(body)
    config_id = await managed(request, configs.create, body.get("Name") or "", value, body.get("Labels") or {})
    return json_response({"ID": config_id}, status=201)


async def config_inspect(request: web.Request):
    from pallet.kernel.cluster import configs

    return json_response(await managed(request, configs.inspect, request.match_info["id"]))


async def config_update(request: web.Request):
    from pallet.kernel.cluster import configs

    body = await json_body(request)
    await managed(request, configs.update, request.match_info["id"], body)
    return web.Response(status=200)


async def config_delete(request: web.Request):
    from pallet.kernel.cluster import configs

    await managed(request, configs.remove, request.match_info["id"])
    return web.Response(status=204)


ROUTES = [
    ("GET", "/secrets", secrets_list),
    ("POST", "/secrets/create", secret_create),
    ("GET", "/secrets/{id}", secret_inspect),
    ("POST", "/secrets/{id}/update", secret_update),
    ("DELETE", "/secrets/{id}", secret_delete),
    ("GET", "/configs", configs_list),
    ("POST", "/configs/create", config_create),
    ("GET", "/configs/{id}", config_inspect),
    ("POST", "/configs/{id}/update", config_update),
    ("DELETE", "/configs/{id}", config_delete),
]
