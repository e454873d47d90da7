"""The HTTP side of ``pallet serve``: routes on every API version, Docker's headers and errors.

Built on aiohttp because it is a maintained asyncio server whose handlers can take over the raw
connection after ``101 Switching Protocols`` (the docker CLI's attach and exec need that: the
response is prepared, then the handler writes Docker's stream frames to ``request.transport``
and reads the client's input through a parser of its own), while one slow client never blocks
the others. Handlers run the kernel's blocking calls in worker threads (:func:`blocking`).
"""

from __future__ import annotations

import asyncio
import os
import re

from aiohttp import web

from pallet.kernel import __version__
from pallet.kernel.api.common import API_VERSION, blocking, check_version, json_body
from pallet.kernel.api.errors import ApiError, error_response, status_for
from pallet.kernel.errors import PalletError

MAX_BODY = 4 << 20   # JSON bodies; /build and archive uploads are streamed, not read whole
VERSIONED = "/v{api_version:[0-9]+[.][0-9]+}"
SWARM_AREAS = ("swarm", "services", "tasks", "nodes", "secrets", "configs")


class AuthorizationRequest:
    """What ``pallet_authorize_request`` sees of a request: method, path (unversioned), query, JSON body."""

    def __init__(self, method: str, path: str, query: dict, body):
        self.method, self.path, self.query, self.body = method, path, query, body

    def __repr__(self) -> str:
        return f"<AuthorizationRequest {self.method} {self.path}>"


def unversioned(path: str) -> str:
    return re.sub(r"^/v[0-9]+\.[0-9]+(?=/)", "", path)


async def _authorize(request: web.Request) -> None:
    """Ask every plugin; the first reason given denies the request (403), as Docker's AuthZ plugins."""
    engine = request.app["engine"]
    hook = getattr(engine.plugins.pm.hook, "pallet_authorize_request", None)
    if hook is None or not hook.get_hookimpls():
        return
    body = None
    if request.can_read_body and request.content_type == "application/json":
        body = await json_body(request)
    info = AuthorizationRequest(request.method, unversioned(request.path), dict(request.query), body)
    reasons = await blocking(lambda: engine.plugins.broadcast("pallet_authorize_request", request=info))
    if reasons:
        raise ApiError(403, f"authorization denied by plugin: {reasons[0]}")


@web.middleware
async def docker_errors(request: web.Request, handler):
    """Version check, authorization, and every failure as ``{"message": …}`` with Docker's code."""
    request.app["activity"].touch()
    try:
        check_version(request.match_info.get("api_version"))
        await _authorize(request)
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status == 404:
            return error_response(404, "page not found")
        if exc.status == 413:
            return error_response(413, f"request body is larger than {MAX_BODY} bytes")
        if exc.status == 405:
            return error_response(405, "method not allowed")
        raise
    except PalletError as exc:
        return error_response(status_for(exc), str(exc))
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception as exc:  # a bug: the client still gets one line, the server keeps serving
        if os.environ.get("PALLET_DEBUG"):
            import traceback

            traceback.print_exc()
        return error_response(500, f"{type(exc).__name__}: {exc}")
    finally:
        request.app["activity"].touch()


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Api-Version"] = API_VERSION
    response.headers["Server"] = f"Pallet/{__version__} (linux)"
    response.headers["Ostype"] = "linux"
    response.headers["Docker-Experimental"] = "false"


async def swarm(request: web.Request):
    raise ApiError(503, "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" "
                        "to connect this node to swarm and try again.")


class Activity:
    """When the server last saw a request, and how many are in flight: ``--timeout`` exits when idle."""

    def __init__(self):
        import time

        self.clock = time.monotonic
        self.last = self.clock()
        self.in_flight = 0

    def touch(self) -> None:
        self.last = self.clock()


def add_routes(app: web.Application, routes) -> None:
    """Each route on the unversioned path and under ``/vX.Y``, as Docker registers them."""
    for method, path, handler in routes:
        for prefix in ("", VERSIONED):
            app.router.add_route(method, prefix + path, handler)


def make_app(engine) -> web.Application:
    from pallet.kernel.api import build, containers, exec as exec_api, images, networks, system
    from pallet.kernel.api import distribution, image_archives
    from pallet.kernel.api.streams import keep_half_closed

    keep_half_closed()

    app = web.Application(middlewares=[docker_errors], client_max_size=MAX_BODY)
    app["engine"] = engine
    app["activity"] = Activity()
    app["sessions"] = {}
    app.on_response_prepare.append(_headers)
    for module in (system, containers, exec_api, images, networks, build):
        add_routes(app, module.ROUTES)
    from pallet.kernel.api import container_archive, container_ops, space, stats

    for module in (space, container_ops, stats, container_archive):
        add_routes(app, module.ROUTES)
    for module in (distribution, image_archives):   # registry and image archive routes (push, auth, save/load, import)
        add_routes(app, module.ROUTES)
    add_routes(app, [("*", f"/{area}{{rest:.*}}", swarm) for area in SWARM_AREAS])
    return app
