"""Disk use and clean-up routes: ``/system/df`` and the prune of containers, images, volumes, networks, build cache.

Each prune calls the function its CLI command uses (``prune_containers``, ``prune_images``,
``VolumeStore.prune``, ``prune_networks``, ``BuildCache.prune``) and answers in Docker's shape:
the deleted lists and ``SpaceReclaimed`` in bytes.
"""

from __future__ import annotations

import contextlib

from aiohttp import web

from pallet.kernel.api.common import blocking, json_response, query_bool, query_json
from pallet.kernel.api.errors import ApiError
from pallet.kernel.errors import PalletError

DF_TYPES = ("container", "image", "volume", "build-cache")


def _filters(request: web.Request, known: tuple[str, ...]) -> dict[str, list[str]]:
    from pallet.kernel.api.system import normalize_filters

    filters = normalize_filters(query_json(request, "filters", {}))
    for key in filters:
        if key not in known:
            raise ApiError(400, f"invalid filter '{key}'")
    return filters


def _until(filters: dict) -> float | None:
    """The ``until`` filter as Unix seconds: objects created after it are kept."""
    from pallet.kernel import events

    values = filters.get("until") or []
    if len(values) > 1:
        raise ApiError(400, "more than one until filter specified")
    if not values:
        return None
    try:
        return events.parse_time(values[0])
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def _epoch(stamp) -> float:
    if isinstance(stamp, (int, float)):
        return float(stamp)
    from pallet.kernel.api.images import _epoch as image_epoch

    return float(image_epoch(stamp or ""))


def _labelled(labels: dict, wanted: list[str]) -> bool:
    from pallet.kernel.cli.container_list import label_match

    return all(label_match(labels or {}, want) for want in wanted)


# --- /system/df ---------------------------------------------------------------------------

def _image_rows(engine, store, containers) -> tuple[list[dict], int]:
    """Docker's image summaries with ``SharedSize`` (bytes in layers another image holds too) and
    ``Containers``; and ``LayersSize``, every layer counted once."""
    from collections import Counter

    images = store.all()
    users = Counter(chain for image in images for chain in set(image.layers))
    sizes: dict[str, int] = {}
    for chain in users:
        with contextlib.suppress(PalletError):
            sizes[chain] = store.layer(chain).size or 0
    rows = []
    for image in images:
        rows.append({
            "Id": image.id, "ParentId": "", "RepoTags": image.repo_tags, "RepoDigests": image.repo_digests,
            "Created": int(_epoch(image.created)), "Size": image.size or 0,
            "SharedSize": sum(sizes.get(c, 0) for c in set(image.layers) if users[c] > 1),
            "Labels": (image.runtime_config or {}).get("Labels") or {},
            "Containers": sum(c.image_id == image.id for c in containers),
        })
    return rows, sum(sizes.values())


def _container_rows(engine, containers) -> list[dict]:
    from pallet.kernel.api.containers import _summary
    from pallet.kernel.cli.system_space import _container_size

    image_sizes = {}
    with contextlib.suppress(PalletError):
        from pallet.kernel import lifecycle

        image_sizes = {i.id: i.size or 0 for i in lifecycle.image_store(engine).all()}
    rows = []
    for record in containers:
        size = _container_size(engine, record)
        rows.append({**_summary(engine, record), "SizeRw": size,
                     "SizeRootFs": size + image_sizes.get(record.image_id, 0)})
    return rows


def _volume_rows(engine) -> list[dict]:
    from pallet.kernel import lifecycle
    from pallet.kernel.cli.volume import inspect_data

    store = lifecycle.volume_store(engine)
    return [{**inspect_data(store, v), "UsageData": {"Size": store.size(v), "RefCount": len(store.in_use_by(v.name))}}
            for v in store.all()]


def _cache_rows(engine, store) -> list[dict]:
    """Build cache entries; one whose layer an image holds is in use (``builder prune`` keeps it)."""
    from datetime import datetime, timezone

    from pallet.kernel.build.cache import BuildCache
    from pallet.kernel.images import manifest as mf

    held = set()
    for image in store.all():
        with contextlib.suppress(PalletError):
            held.update(d.digest for d in mf.parse_manifest(store.blobs.read(image.manifest_digest)).layers)
    rows = []
    for entry in BuildCache(engine, store).entries():
        used = datetime.fromtimestamp(entry.last_used, timezone.utc).isoformat().replace("+00:00", "Z")
        rows.append({"ID": entry.key.split(":", 1)[1][:25], "Parent": "", "Parents": None, "Type": "regular",
                     "Description": entry.description, "InUse": entry.digest in held, "Shared": False,
                     "Size": entry.size, "CreatedAt": entry.created or used, "LastUsedAt": used, "UsageCount": 1})
    return rows


def disk_usage(engine, types: list[str]) -> dict:
    from pallet.kernel import lifecycle
    from pallet.kernel.containers import ContainerStore

    containers = [lifecycle.refresh(engine, r) for r in ContainerStore(engine).all()]
    store = lifecycle.image_store(engine)
    data: dict = {}
    if "image" in types:
        data["Images"], data["LayersSize"] = _image_rows(engine, store, containers)
    if "container" in types:
        data["Containers"] = _container_rows(engine, containers)
    if "volume" in types:
        data["Volumes"] = _volume_rows(engine)
    if "build-cache" in types:
        data["BuildCache"] = _cache_rows(engine, store)
    return data


async def system_df(request: web.Request):
    types = request.query.getall("type", []) or list(DF_TYPES)
    for kind in types:
        if kind not in DF_TYPES:
            raise ApiError(400, f"unknown object type: {kind}")
    return json_response(await blocking(disk_usage, request.app["engine"], types))


# --- prune --------------------------------------------------------------------------------

def _prune_containers(engine, filters: dict) -> dict:
    from pallet.kernel.cli.container_ops import prune_containers

    until = _until(filters)
    removed, reclaimed = prune_containers(engine, [("label", v) for v in filters.get("label", [])],
                                          keep=lambda r: until is not None and r.created > until)
    return {"ContainersDeleted": removed, "SpaceReclaimed": reclaimed}


async def prune_containers(request: web.Request):
    filters = _filters(request, ("label", "until"))
    return json_response(await blocking(_prune_containers, request.app["engine"], filters))


def _prune_images(engine, filters: dict) -> dict:
    from pallet.kernel import lifecycle
    from pallet.kernel.cli.image import prune_images

    dangling = [v.lower() for v in filters.get("dangling", ["true"])]
    if any(v not in ("true", "false", "1", "0") for v in dangling):
        raise ApiError(400, f"invalid filter 'dangling={dangling[0]}'")
    until, labels = _until(filters), filters.get("label", [])

    def keep(record) -> bool:
        return (until is not None and _epoch(record.created) > until) or \
            not _labelled((record.runtime_config or {}).get("Labels"), labels)

    from pallet.kernel import debris

    store = lifecycle.image_store(engine)
    pending = debris.unheld(engine, store)  # measured first: taking the lock already sweeps some
    with store.locked():   # no container is created meanwhile (they lease their image under it)
        steps, reclaimed = prune_images(engine, store, all_=dangling[0] in ("false", "0"), keep=keep,
                                        before_debris=pending)
    return {"ImagesDeleted": [{kind: what} for kind, what in steps], "SpaceReclaimed": reclaimed}


async def prune_images(request: web.Request):
    filters = _filters(request, ("dangling", "label", "until"))
    return json_response(await blocking(_prune_images, request.app["engine"], filters))


def _prune_volumes(engine, filters: dict) -> dict:
    from pallet.kernel import lifecycle

    labels = {}
    for want in filters.get("label", []):
        key, _sep, value = want.partition("=")
        labels[key] = value
    every = [v.lower() for v in filters.get("all", ["false"])]
    removed, reclaimed = lifecycle.volume_store(engine).prune(every[0] in ("true", "1"), labels)
    return {"VolumesDeleted": removed, "SpaceReclaimed": reclaimed}


async def prune_volumes(request: web.Request):
    filters = _filters(request, ("label", "all"))
    return json_response(await blocking(_prune_volumes, request.app["engine"], filters))


def _prune_networks(engine, filters: dict) -> dict:
    from pallet.kernel.cli.network import prune_networks
    from pallet.kernel.network.store import NetworkStore

    engine.plugins.load("network")
    until = _until(filters)
    removed = prune_networks(NetworkStore(engine), [f"label={v}" for v in filters.get("label", [])],
                             keep=lambda r: until is not None and _epoch(r.created) > until)
    return {"NetworksDeleted": removed}


async def prune_networks(request: web.Request):
    filters = _filters(request, ("label", "until"))
    return json_response(await blocking(_prune_networks, request.app["engine"], filters))


def _prune_build_cache(engine, every: bool, filters: dict) -> dict:
    from pallet.kernel import lifecycle
    from pallet.kernel.build import executor
    from pallet.kernel.build.cache import BuildCache

    until = _until(filters)
    executor.clean_stale(engine)
    removed, freed = BuildCache(engine, lifecycle.image_store(engine)).prune(keep_used_by_images=not every,
                                                                           older_than=until)
    return {"CachesDeleted": [key.split(":", 1)[1][:25] for key in removed], "SpaceReclaimed": freed}


async def prune_build_cache(request: web.Request):
    filters = _filters(request, ("until", "unused-for"))
    if "unused-for" in filters:
        filters = {**filters, "until": filters.pop("unused-for")}
    return json_response(await blocking(_prune_build_cache, request.app["engine"], query_bool(request, "all"),
                                        filters))


ROUTES = [
    ("GET", "/system/df", system_df),
    ("POST", "/containers/prune", prune_containers),
    ("POST", "/images/prune", prune_images),
    ("POST", "/volumes/prune", prune_volumes),
    ("POST", "/networks/prune", prune_networks),
    ("POST", "/build/prune", prune_build_cache),
]
