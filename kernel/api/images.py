"""Image routes: pull (Docker's JSON progress stream), list, inspect, history, tag, delete.

Pulls go through the CLI's ``pull_image`` (trust policy, transports, hooks); removal through ``remove_image``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import datetime

from aiohttp import web

from pallet.kernel.api.common import blocking, json_response, query_bool
from pallet.kernel.api.errors import ApiError
from pallet.kernel.errors import NotFound, PalletError
from pallet.kernel.images.progress import Quiet


def _store(engine):
    from pallet.kernel.images import ImageStore

    return ImageStore(engine)


def _epoch(stamp: str) -> int:
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")[:32]).timestamp())
    except (ValueError, AttributeError):
        return 0


class JsonProgress(Quiet):
    """The pull's progress as Docker's JSON messages, handed from the pulling thread to the response."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue):
        self.loop, self.queue = loop, queue
        self.sizes: dict[str, list[int]] = {}
        self.lock = threading.Lock()

    def put(self, message: dict) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, message)

    def message(self, text: str) -> None:
        self.put({"status": text})

    def start(self, key: str, total: int | None, status: str = "Downloading") -> None:
        with self.lock:
            self.sizes[key] = [0, total or 0]
        self.put({"status": status, "progressDetail": {"current": 0, "total": total or 0}, "id": key})

    def advance(self, key: str, amount: int) -> None:
        with self.lock:
            current = self.sizes.setdefault(key, [0, 0])
            current[0] += amount
            detail = {"current": current[0], "total": current[1]}
        self.put({"status": "Downloading", "progressDetail": detail, "id": key})

    def finish(self, key: str, status: str) -> None:
        self.put({"status": status, "progressDetail": {}, "id": key})


def _pull(engine, name: str, progress: JsonProgress, platform: str | None) -> list[str]:
    from pallet.kernel.cli.image import pull_image

    return list(pull_image(engine, name, lambda: progress, platform or None))


async def create(request: web.Request):
    engine = request.app["engine"]
    if request.query.get("fromSrc"):
        raise ApiError(501, "importing with fromSrc is not supported by pallet serve (use `pallet import`)")
    name = request.query.get("fromImage") or ""
    if not name:
        raise ApiError(400, "fromImage is required")
    tag = request.query.get("tag") or ""
    if tag and "@" not in name:
        name = f"{name}@{tag}" if tag.startswith("sha256:") else f"{name}:{tag}"
    queue: asyncio.Queue = asyncio.Queue()
    progress = JsonProgress(asyncio.get_running_loop(), queue)
    pulling = asyncio.ensure_future(blocking(_pull, engine, name, progress, request.query.get("platform")))
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.wait([pulling, waiting], return_when=asyncio.FIRST_COMPLETED)
    if pulling.done() and pulling.exception() is not None and waiting.done() is False:
        waiting.cancel()
        raise pulling.exception()  # failed before any output: a plain error status (404 for unknown images)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    while True:
        if waiting.done():
            await response.write(json.dumps(waiting.result()).encode() + b"\r\n")
            waiting = asyncio.ensure_future(queue.get())
            continue
        if pulling.done():
            break
        await asyncio.wait([pulling, waiting], return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    while not queue.empty():
        await response.write(json.dumps(queue.get_nowait()).encode() + b"\r\n")
    error = pulling.exception()
    if error is None:
        for pulled in pulling.result():
            await response.write(json.dumps({"status": f"Status: Downloaded newer image for {pulled}"}).encode() + b"\r\n")
    else:
        message = str(error) if isinstance(error, PalletError) else f"{type(error).__name__}: {error}"
        await response.write(json.dumps({"errorDetail": {"message": message}, "error": message}).encode() + b"\r\n")
    await response.write_eof()
    return response


def _summary(record) -> dict:
    labels = (record.runtime_config or {}).get("Labels") or {}
    return {"Id": record.id, "ParentId": "", "RepoTags": record.repo_tags, "RepoDigests": record.repo_digests,
            "Created": _epoch(record.created), "Size": record.size, "SharedSize": -1, "VirtualSize": record.size,
            "Labels": labels, "Containers": -1}


def _list(engine, show_all: bool, filters: dict) -> list[dict]:
    records = _store(engine).all()
    wanted = (filters or {}).get("reference") or []
    if wanted:
        import fnmatch

        records = [r for r in records if any(fnmatch.fnmatch(t, w) or fnmatch.fnmatch(t.rsplit(":", 1)[0], w)
                                             for t in r.repo_tags for w in wanted)]
    if "dangling" in (filters or {}):
        dangling = [v in ("true", "1") for v in filters["dangling"]][0]
        records = [r for r in records if (not r.repo_tags) == dangling]
    return [_summary(r) for r in records]


async def list_(request: web.Request):
    from pallet.kernel.api.common import query_json

    return json_response(await blocking(_list, request.app["engine"], query_bool(request, "all"),
                                        query_json(request, "filters", {})))


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
    target = f"{repo}:{request.query.get('tag') or 'latest'}"
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
