"""Image routes: pull (Docker's JSON progress stream), list, inspect, history, tag, delete.

Pulls go through the CLI's ``pull_image`` (trust policy, transports, hooks); removal through ``remove_image``.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from pallet.kernel.api.common import at_least, blocking, json_response, query_bool
from pallet.kernel.api.errors import ApiError
from pallet.kernel.api.progress import stream_work
from pallet.kernel.errors import NotFound


def _store(engine):
    from pallet.kernel.images import ImageStore

    return ImageStore(engine)


def _epoch(stamp: str) -> int:
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")[:32]).timestamp())
    except (ValueError, AttributeError):
        return 0


def _pull(progress, engine, name: str, platform: str | None, credentials: dict | None) -> list[dict]:
    from pallet.kernel.cli.image import pull_image

    list(pull_image(engine, name, lambda: progress, platform or None, credentials=credentials))
    return []   # the transport's last message already said "Status: Downloaded newer image for …"


async def create(request: web.Request):
    from pallet.kernel.api.distribution import credentials_for

    engine = request.app["engine"]
    if request.query.get("fromSrc"):
        from pallet.kernel.api.image_archives import import_image

        return await import_image(request)
    name = request.query.get("fromImage") or ""
    if not name:
        raise ApiError(400, "fromImage is required")
    tag = request.query.get("tag") or ""
    if tag and "@" not in name:
        name = f"{name}@{tag}" if tag.startswith("sha256:") else f"{name}:{tag}"
    return await stream_work(request, _pull, engine, name, request.query.get("platform"),
                             credentials_for(request, name))


def _summary(record) -> dict:
    labels = (record.runtime_config or {}).get("Labels") or {}
    return {"Id": record.id, "ParentId": "", "RepoTags": record.repo_tags, "RepoDigests": record.repo_digests,
            "Created": _epoch(record.created), "Size": record.size, "SharedSize": -1, "VirtualSize": record.size,
            "Labels": labels, "Containers": -1}


def _list(engine, show_all: bool, filters: dict, manifests: bool = False) -> list[dict]:
    """``manifests`` (API 1.47, ``?manifests=1``): each summary's ``Manifests``, its platform variants."""
    store = _store(engine)
    records = store.all()
    wanted = (filters or {}).get("reference") or []
    if wanted:
        import fnmatch

        records = [r for r in records if any(fnmatch.fnmatch(t, w) or fnmatch.fnmatch(t.rsplit(":", 1)[0], w)
                                             for t in r.repo_tags for w in wanted)]
    if "dangling" in (filters or {}):
        dangling = [v in ("true", "1") for v in filters["dangling"]][0]
        records = [r for r in records if (not r.repo_tags) == dangling]
    if not manifests:
        return [_summary(r) for r in records]
    from pallet.kernel.cli.image import _containers_using
    from pallet.kernel.cli.image_tree import manifest_summaries

    used = _containers_using(engine)
    return [{**_summary(r), "Manifests": manifest_summaries(store, r, used)} for r in records]


async def list_(request: web.Request):
    from pallet.kernel.api.common import query_json

    # As Docker: ``manifests`` is read from API 1.47 on, ignored for older clients.
    manifests = at_least(request, "1.47") and query_bool(request, "manifests")
    return json_response(await blocking(_list, request.app["engine"], query_bool(request, "all"),
                                        query_json(request, "filters", {}), manifests))


def _resolve(engine, name: str):
    try:
        return _store(engine).resolve(name)
    except NotFound:
        raise ApiError(404, f"No such image: {name}") from None


async def inspect(request: web.Request):
    engine = request.app["engine"]

    def document():
        store = _store(engine)
        record = _resolve(engine, request.match_info["name"])
        data = store.inspect(record)
        return {**data, "Created": record.created, "ContainerConfig": {}, "DockerVersion": "",
                "VirtualSize": record.size}

    return json_response(await blocking(document))


async def history(request: web.Request):
    engine = request.app["engine"]

    def rows():
        store = _store(engine)
        record = _resolve(engine, request.match_info["name"])
        sizes = [store.layer(chain).size for chain in record.layers]
        result = []
        for entry in reversed(record.config.get("history") or []):
            size = 0 if entry.get("empty_layer") or not sizes else sizes.pop()
            result.append({"Id": "<missing>", "Created": _epoch(entry.get("created", "")),
                           "CreatedBy": entry.get("created_by", ""), "Tags": None, "Size": size,
                           "Comment": entry.get("comment", "")})
        if result:
            result[0].update(Id=record.id, Tags=record.repo_tags or None)
        return result

    return json_response(await blocking(rows))


async def tag(request: web.Request):
    engine = request.app["engine"]
    repo = request.query.get("repo") or ""
    if not repo:
        raise ApiError(400, "repository name must have at least one component")
    from pallet.kernel.images import reference as refs

    ref = refs.parse(repo)   # as Docker, ``repo`` may carry the tag itself (docker-py's ``image.tag("r:t")``)
    if ref.digest:
        raise ApiError(400, "refusing to create a tag with a digest reference")
    tag = request.query.get("tag") or ""
    target = ref.with_tag(tag).familiar() if tag else ref.familiar()
    await blocking(lambda: (_resolve(engine, request.match_info["name"]), _store(engine).tag(
        request.match_info["name"], target)))
    return web.Response(status=201)


async def remove(request: web.Request):
    from pallet.kernel.cli.image import remove_image

    engine = request.app["engine"]
    name = request.match_info["name"]
    await blocking(_resolve, engine, name)
    def locked_remove():
        store = _store(engine)
        with store.locked():   # as the CLI's rmi: no container is created from it meanwhile
            return remove_image(engine, store, name, query_bool(request, "force"))

    steps = await blocking(locked_remove)
    return json_response([{kind: what} for kind, what in steps])


async def search(request: web.Request):
    raise ApiError(501, "image search is not supported by pallet: there is no index to search")


ROUTES = [
    ("POST", "/images/create", create),
    ("GET", "/images/json", list_),
    ("GET", "/images/search", search),
    ("GET", "/images/{name:.+}/json", inspect),
    ("GET", "/images/{name:.+}/history", history),
    ("POST", "/images/{name:.+}/tag", tag),
    ("DELETE", "/images/{name:.+}", remove),
]
