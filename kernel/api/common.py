"""What every route module shares: API versions, blocking calls off the loop, JSON in and out."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from pallet.kernel.api.errors import ApiError

API_VERSION = "1.47"
MIN_API_VERSION = "1.24"


def _version_tuple(text: str) -> tuple[int, int]:
    major, _sep, minor = text.partition(".")
    return int(major), int(minor or 0)


def check_version(version: str | None) -> None:
    """A path version outside MIN_API_VERSION…API_VERSION is refused with Docker's wording."""
    if version is None:
        return
    if _version_tuple(version) < _version_tuple(MIN_API_VERSION):
        raise ApiError(400, f"client version {version} is too old. Minimum supported API version is "
                            f"{MIN_API_VERSION}, please upgrade your client to a newer version")
    if _version_tuple(version) > _version_tuple(API_VERSION):
        raise ApiError(400, f"client version {version} is too new. Maximum supported API version is {API_VERSION}")


def request_version(request) -> tuple[int, int]:
    """The API version the client speaks: its path's ``/vX.Y``, else (unversioned) this server's, as Docker."""
    return _version_tuple(request.match_info.get("api_version") or API_VERSION)


def at_least(request, version: str) -> bool:
    """Whether the request's API version has what ``version`` brought (Docker ignores newer parameters below it)."""
    return request_version(request) >= _version_tuple(version)


async def blocking(function, *args, **kwargs):
    """Run a kernel call (file locks, forks, waits) off the event loop."""
    return await asyncio.to_thread(function, *args, **kwargs)


async def json_body(request: web.Request, default=None):
    """The request's JSON body; a malformed one is a 400, as Docker says it."""
    raw = await request.read()
    if not raw.strip():
        return {} if default is None else default
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"invalid JSON: {exc}") from None


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    return value.lower() not in ("", "0", "false", "no")


def query_json(request: web.Request, name: str, default=None):
    value = request.query.get(name)
    if not value:
        return default
    try:
        return json.loads(value)
    except ValueError:
        raise ApiError(400, f"invalid {name} parameter: {value}") from None


def json_response(data, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(data).encode() + b"\n",
                        headers={"Content-Type": "application/json"})


def normalize_filters(raw) -> dict[str, list[str]]:
    """Docker's ``filters`` JSON in either shape: ``{"type": ["container"]}`` or ``{"type": {"container": true}}``."""
    if not raw:
        return {}
    if not isinstance(raw, dict):
        raise ApiError(400, "invalid filters: expected a JSON object")
    return {key: [k for k, on in value.items() if on] if isinstance(value, dict) else list(value)
            for key, value in raw.items()}
