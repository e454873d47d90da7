"""Registry routes: ``POST /images/{name}/push`` (Docker's progress stream), ``POST /auth``, and the
credentials clients send: ``X-Registry-Auth`` (pull, push) and ``X-Registry-Config`` (build).

Credentials a client sends are used for that request only and win over pallet's own login
(``pallet login``); the server never stores them, as Docker's daemon (the docker CLI keeps
them in its ``config.json``).
"""

from __future__ import annotations

import base64
import binascii
import json

from aiohttp import web

from pallet.kernel.api.common import at_least, blocking, json_body, json_response
from pallet.kernel.api.errors import ApiError
from pallet.kernel.api.progress import stream_work
from pallet.kernel.errors import PalletError


def _decode_header(request: web.Request, name: str):
    """A header holding base64url JSON (Docker's encoding; standard base64 and missing padding accepted)."""
    raw = request.headers.get(name, "").strip()
    if not raw:
        return None
    text = raw.translate(str.maketrans("+/", "-_"))
    try:
        return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        raise ApiError(400, f"invalid {name} header: not base64-encoded JSON") from None


def _pair(config, where: str) -> tuple[str, str] | None:
    """(username, password) of one Docker ``AuthConfig``; None when it holds neither."""
    if not isinstance(config, dict):
        raise ApiError(400, f"invalid {where}: expected a JSON object")
    username, password = config.get("username") or "", config.get("password") or ""
    if not (username or password) and config.get("auth"):
        try:
            username, _sep, password = base64.b64decode(config["auth"]).decode().partition(":")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise ApiError(400, f"invalid {where}: auth is not base64 of user:password") from None
    return (str(username), str(password)) if username or password else None


def _domain(name: str) -> str | None:
    from pallet.kernel.images import reference as refs

    try:
        return refs.parse(name.removeprefix("docker://")).domain
    except PalletError:
        return None


def credentials_for(request: web.Request, name: str) -> dict | None:
    """``X-Registry-Auth`` as transport credentials for the registry of image ``name``."""
    from pallet.kernel.images import auth

    config = _decode_header(request, "X-Registry-Auth")
    if config is None:
        return None
    pair = _pair(config, "X-Registry-Auth header")
    if pair is None:
        return None   # an empty AuthConfig ("{}", what the docker CLI sends when not logged in): pallet's login
    domain = _domain(name) or (auth.normalise_server(config["serveraddress"]) if config.get("serveraddress")
                               else None)
    return {domain: pair} if domain else None


def build_credentials(request: web.Request) -> dict:
    """``X-Registry-Config`` (registry address -> AuthConfig) as transport credentials for a build's pulls."""
    from pallet.kernel.images import auth

    configs = _decode_header(request, "X-Registry-Config") or {}
    if not isinstance(configs, dict):
        raise ApiError(400, "invalid X-Registry-Config header: expected a JSON object")
    result = {}
    for server, config in configs.items():
        pair = _pair(config, f"X-Registry-Config entry {server}")
        if pair is not None:
            try:
                result[auth.normalise_server(server)] = pair
            except PalletError as exc:
                raise ApiError(400, f"invalid X-Registry-Config header: {exc}") from None
    return result


# --- push -------------------------------------------------------------------------------

def _targets(engine, name: str, tag: str) -> list[str]:
    """What ``docker push NAME[:TAG]`` sends: the one tag, or every tag of the repository (``--all-tags``)."""
    from pallet.kernel.images import ImageStore
    from pallet.kernel.images import reference as refs

    store = ImageStore(engine)
    if tag:
        target = f"{name}@{tag}" if tag.startswith("sha256:") else f"{name}:{tag}"
        try:
            store.resolve(target)
        except PalletError:   # unknown, or not a valid reference: Docker says the same
            raise ApiError(404, f"An image does not exist locally with the tag: {name}") from None
        return [target]
    try:
        repository = refs.parse(name, default_tag=False)
    except PalletError as exc:
        raise ApiError(400, str(exc)) from None
    if repository.tag or repository.digest:
        return [name]
    tagged = sorted(t for record in store.all() for t in record.repo_tags
                    if refs.parse(t).name == repository.name)
    if not tagged:
        raise ApiError(404, f"An image does not exist locally with the tag: {name}")
    return tagged


def _push(progress, engine, targets: list[str], credentials: dict | None) -> list[dict]:
    from pallet.kernel.cli.image import push_image
    from pallet.kernel.images import ImageStore
    from pallet.kernel.images import reference as refs

    store = ImageStore(engine)
    for target in targets:
        digest = push_image(engine, target, target, progress, credentials=credentials)
        progress.aux({"Tag": refs.parse(target).reference, "Digest": digest, "Size": store.blobs.size(digest)})
    return []


def _platform_query(request: web.Request) -> str:
    """``platform`` (API 1.46: a JSON OCI platform) as ``os/arch[/variant]``; "" when absent or the client is older."""
    import json

    raw = request.query.get("platform") or ""
    if not raw or not at_least(request, "1.46"):
        return ""
    try:
        platform = json.loads(raw)
        if not isinstance(platform, dict) or not platform.get("os") or not platform.get("architecture"):
            raise ValueError("os and architecture are required")
    except ValueError as exc:
        raise ApiError(400, f"failed to parse platform: {exc}") from None
    from pallet.kernel.images import manifest as mf

    return mf.platform_text(platform)


def _of_platform(engine, targets: list[str], platform: str) -> None:
    """pallet keeps one platform per image: each target is pushed as it is if it is of ``platform``, else Docker's error."""
    from pallet.kernel.cli.image import _of_platform as check
    from pallet.kernel.images import ImageStore

    store = ImageStore(engine)
    for target in targets:
        try:
            check(store.resolve(target), target, platform)
        except PalletError as exc:
            raise ApiError(404, str(exc)) from None


async def push(request: web.Request):
    engine = request.app["engine"]
    name = request.match_info["name"]
    targets = await blocking(_targets, engine, name, request.query.get("tag") or "")
    platform = _platform_query(request)
    if platform:
        await blocking(_of_platform, engine, targets, platform)
    return await stream_work(request, _push, engine, targets, credentials_for(request, name))


# --- login ------------------------------------------------------------------------------

def _check_login(engine, server: str, username: str, password: str) -> None:
    from pallet.kernel.images import auth
    from pallet.kernel.images.registry import RegistryClient, RegistryUnauthorized

    client = RegistryClient(engine.config, auth.normalise_server(server), credentials=(username, password))
    try:
        client.check_login()
    except RegistryUnauthorized:
        raise ApiError(401, f"login attempt to {client.base}/v2/ failed with status: 401 Unauthorized") from None
    finally:
        client.close()


async def login(request: web.Request):
    """``POST /auth``: check the credentials against the registry; nothing is stored (the client keeps them)."""
    body = await json_body(request)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid JSON: expected an AuthConfig object")
    username, password = body.get("username") or "", body.get("password") or ""
    if not username or not password:
        raise ApiError(400, "username and password are required")
    server = body.get("serveraddress") or "https://index.docker.io/v1/"
    await blocking(_check_login, request.app["engine"], str(server), str(username), str(password))
    return json_response({"Status": "Login Succeeded", "IdentityToken": ""})


ROUTES = [
    ("POST", "/auth", login),
    ("POST", "/images/{name:.+}/push", push),
]
