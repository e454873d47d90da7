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
    from pallet.kernel.build import BuildRequest, run_resources
    from pallet.kernel.errors import UsageError
    from pallet.kernel.images import manifest as mf
    from pallet.kernel.images import reference as refs

    tags = query.getall("t", [])
    for tag in tags:
        refs.parse(tag)
    platform = query.get("platform") or ""
    try:
        foreign = bool(platform) and mf.parse_platform(platform) != mf.host_platform()
    except PalletError as exc:
        raise ApiError(400, str(exc)) from None
    if foreign:
        raise ApiError(400, f"platform {platform}: only the host's platform can be built here")
    cache_from = query_json(query, "cachefrom", list)
    if not all(isinstance(ref, str) for ref in cache_from):
        raise ApiError(400, "invalid cachefrom: expected a JSON array of image references")
    network = query.get("networkmode") or "default"
    if _flag(query, "squash"):
        raise ApiError(400, "squash is only supported with experimental mode")   # dockerd's wording, without it
    try:
        resources = run_resources(**{name: _integer(query, key) for name, key in RESOURCE_PARAMS},
                                  cpuset_cpus=query.get("cpusetcpus") or None)
    except UsageError as exc:
        raise ApiError(400, str(exc)) from None
    # rm / forcerm: RUN containers are always removed (a failed step's too), so both are Docker's default here
    return BuildRequest(resources=resources, 
        context="-", dockerfile=query.get("dockerfile") or "", context_stream=context_stream, tags=tags,
        build_args={k: v for k, v in (query_json(query, "buildargs", dict)).items() if v is not None},
        labels=query_json(query, "labels", dict), target=query.get("target") or "",
        no_cache=_flag(query, "nocache"), cache_from=cache_from,
        pull=query.get("pull", "") not in ("", "0", "false", "False"), credentials=credentials,
        network="host" if network == "default" else network,
        extra_hosts=[hostopts.parse_extra_host(h) for h in query.getall("extrahosts", []) if h])


RESOURCE_PARAMS = (("shm_size", "shmsize"), ("memory", "memory"), ("memory_swap", "memswap"),
                   ("cpu_shares", "cpushares"), ("cpu_period", "cpuperiod"), ("cpu_quota", "cpuquota"))


def _integer(query, name: str) -> int | None:
    raw = query.get(name, "")
    if raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"invalid {name}: {raw} is not an integer") from None


def _flag(query, name: str) -> bool:
    return query.get(name, "") in ("1", "true", "True")


def query_json(query, name: str, kind: type):
    """The JSON object (``kind`` dict) or array (list) in query parameter ``name``; empty when absent."""
    raw = query.get(name)
    if not raw:
        return kind()
    try:
        value = json.loads(raw)
    except ValueError:
        raise ApiError(400, f"invalid {name}: {raw}") from None
    if not isinstance(value, kind):
        raise ApiError(400, f"invalid {name}: expected a JSON {'object' if kind is dict else 'array'}")
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
        # q=1 (docker build -q): the steps' output is held back and sent only if the build fails;
        # success streams just the image id, as dockerd does
        quiet = _flag(request.query, "q")
        held: list[str] = []
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def progress(event):
            for line in _event_lines(event):
                if quiet:
                    held.append(line)
                else:
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
        if error is None and quiet:
            image_id = building.result()
            messages = [{"aux": {"ID": image_id}}, {"stream": image_id + "\n"}]
        elif error is None:
            image_id = building.result()
            messages = [{"aux": {"ID": image_id}}, {"stream": f"Successfully built {image_id.split(':')[-1][:12]}\n"}]
            messages += [{"stream": f"Successfully tagged {tag}\n"} for tag in build_request.tags]
        else:
            message = str(error) if isinstance(error, PalletError) else f"{type(error).__name__}: {error}"
            messages = [{"stream": "".join(held)}] if held else []
            messages.append({"errorDetail": {"message": message}, "error": message})
        for message in messages:
            await response.write(json.dumps(message).encode() + b"\r\n")
        await response.write_eof()
        return response
    finally:
        spool.close()


ROUTES = [("POST", "/build", build)]
