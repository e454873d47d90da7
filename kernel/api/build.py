"""``POST /build``: a tar context (plain or gzip) built by ``kernel.build``, with Docker's stream/aux/error messages."""

from __future__ import annotations

import asyncio
import gzip
import json
import tempfile

from aiohttp import web

from pallet.kernel.api.common import blocking
from pallet.kernel.api.errors import ApiError
from pallet.kernel.errors import PalletError

CONTEXT_LIMIT = 8 << 30   # a context larger than this is refused while it is being received


def _event_lines(event: dict) -> list[str]:
    """A build progress event as the lines Docker's classic builder prints."""
    kind = event.get("type")
    if kind == "step":
        return [f"Step {event['id']} : {event['name']}\n"]
    if kind == "log":
        return [event["text"] + "\n"]
    if kind == "cached":
        return [" ---> Using cache\n"]
    return []


def _request(query, context_stream, credentials: dict):
    from pallet.kernel import hostopts
    from pallet.kernel.build import BuildRequest
    from pallet.kernel.images import reference as refs

    tags = query.getall("t", [])
    for tag in tags:
        refs.parse(tag)
    network = query.get("networkmode") or "default"
    return BuildRequest(
        context="-", dockerfile=query.get("dockerfile") or "", context_stream=context_stream, tags=tags,
        build_args={k: v for k, v in (query_json_dict(query, "buildargs")).items() if v is not None},
        labels=query_json_dict(query, "labels"), target=query.get("target") or "",
        no_cache=query.get("nocache", "") in ("1", "true", "True"),
        pull=query.get("pull", "") not in ("", "0", "false", "False"), credentials=credentials,
        network="host" if network == "default" else network,
        extra_hosts=[hostopts.parse_extra_host(h) for h in query.getall("extrahosts", []) if h])


def query_json_dict(query, name: str) -> dict:
    raw = query.get(name)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise ApiError(400, f"invalid {name}: {raw}") from None
    if not isinstance(value, dict):
        raise ApiError(400, f"invalid {name}: expected a JSON object")
    return value


async def _spool(request: web.Request):
    """The body in a temp file (a context may be larger than memory); gzip is opened as such."""
    spool = tempfile.TemporaryFile()
    size = 0
    async for chunk in request.content.iter_chunked(1 << 20):
        size += len(chunk)
        if size > CONTEXT_LIMIT:
            spool.close()
            raise ApiError(413, f"build context larger than {CONTEXT_LIMIT} bytes")
        await blocking(spool.write, chunk)
    spool.seek(0)
    magic = spool.read(2)
    spool.seek(0)
    return gzip.GzipFile(fileobj=spool) if magic == b"\x1f\x8b" else spool, spool


async def build(request: web.Request):
    from pallet.kernel.build import build as run_build

    from pallet.kernel.api.distribution import build_credentials

    engine = request.app["engine"]
    credentials = build_credentials(request)   # X-Registry-Config: for the FROM images of private registries
    stream, spool = await _spool(request)
    try:
        build_request = _request(request.query, stream, credentials)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def progress(event):
            for line in _event_lines(event):
                loop.call_soon_threadsafe(queue.put_nowait, {"stream": line})

        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        building = asyncio.ensure_future(blocking(run_build, engine, build_request, progress))
        while not building.done() or not queue.empty():
            getting = asyncio.ensure_future(queue.get())
            await asyncio.wait([building, getting], return_when=asyncio.FIRST_COMPLETED)
            if getting.done():
                await response.write(json.dumps(getting.result()).encode() + b"\r\n")
            else:
                getting.cancel()
        error = building.exception()
        if error is None:
            image_id = building.result()
            messages = [{"aux": {"ID": image_id}}, {"stream": f"Successfully built {image_id.split(':')[-1][:12]}\n"}]
            messages += [{"stream": f"Successfully tagged {tag}\n"} for tag in build_request.tags]
        else:
            message = str(error) if isinstance(error, PalletError) else f"{type(error).__name__}: {error}"
            messages = [{"errorDetail": {"message": message}, "error": message}]
        for message in messages:
            await response.write(json.dumps(message).encode() + b"\r\n")
        await response.write_eof()
        return response
    finally:
        spool.close()


ROUTES = [("POST", "/build", build)]
