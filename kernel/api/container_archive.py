"""``/containers/{id}/archive``: HEAD (stat), GET (a tar of a path) and PUT (extract a tar), for ``docker cp``.

The docker CLI does the renaming itself: it stats both ends, asks for a tar whose entries are
named after the source's last element, rebases it, and uploads into an existing directory. So
the server only resolves paths as the container sees them and moves tars, with ``pallet cp``'s
code (:mod:`pallet.kernel.cli.container_ops`): paths resolved inside the root (no symlink leads
out), bind mounts and volumes seen through, uploads staged in a private directory and checked
(``noOverwriteDirNonDir``) before anything is placed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import posixpath
import stat as st
from datetime import datetime, timezone
from pathlib import Path

from aiohttp import web

from pallet.kernel.api.common import blocking, query_bool
from pallet.kernel.api.containers import record_of
from pallet.kernel.api.errors import ApiError

# Go's os.FileMode type bits, which the docker CLI tests (``IsDir``) in the stat header.
GO_DIR, GO_SYMLINK, GO_DEVICE, GO_PIPE, GO_SOCKET = 1 << 31, 1 << 27, 1 << 26, 1 << 25, 1 << 24
GO_SETUID, GO_SETGID, GO_CHAR, GO_STICKY = 1 << 23, 1 << 22, 1 << 21, 1 << 20


def go_mode(mode: int) -> int:
    """A POSIX ``st_mode`` as Go's ``os.FileMode``: permission bits plus Go's own type and special bits."""
    result = mode & 0o777
    kinds = ((st.S_ISDIR, GO_DIR), (st.S_ISLNK, GO_SYMLINK), (st.S_ISFIFO, GO_PIPE), (st.S_ISSOCK, GO_SOCKET),
             (st.S_ISBLK, GO_DEVICE), (st.S_ISCHR, GO_DEVICE | GO_CHAR))
    for test, bits in kinds:
        if test(mode):
            result |= bits
            break
    for flag, bits in ((st.S_ISUID, GO_SETUID), (st.S_ISGID, GO_SETGID), (st.S_ISVTX, GO_STICKY)):
        if mode & flag:
            result |= bits
    return result


def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise ApiError(400, "path is required")
    return path


def _absolute(path: str) -> str:
    """Docker's absolute form: joined to ``/``, keeping a trailing ``/`` or ``/.`` (they mean "the directory")."""
    absolute = posixpath.normpath(posixpath.join("/", path))
    if path.endswith("/.") or path == ".":
        return absolute.rstrip("/") + "/."
    if path.endswith("/") and absolute != "/":
        return absolute + "/"
    return absolute


def _follows_last(path: str) -> bool:
    return path.endswith(("/", "/.")) or path == "."


def _inside(rootfs: Path, host_path: Path) -> str:
    """The container's name for a host path under its rootfs."""
    return posixpath.normpath("/" + host_path.relative_to(rootfs).as_posix())


def _missing(path: str, name: str) -> ApiError:
    return ApiError(404, f"Could not find the file {path} in container {name}")


def _stat(engine, record, rootfs: Path, path: str, name: str) -> tuple[Path, dict]:
    """The host path of ``path`` and Docker's stat of it (``name`` is the last element, ``.`` for ``dir/.``)."""
    from pallet.kernel.cli.container_cp import container_view
    from pallet.kernel.rootpath import resolve_in_root

    absolute = _absolute(path)
    view = container_view(engine, record, rootfs)
    source = view.host(view.resolve(absolute, follow_last=_follows_last(path)))
    try:
        info = os.lstat(source)
    except (FileNotFoundError, NotADirectoryError):
        raise _missing(path, name) from None
    link = ""
    if st.S_ISLNK(info.st_mode):
        link = _inside(rootfs, resolve_in_root(rootfs, absolute, follow_last=True))
    mtime = datetime.fromtimestamp(info.st_mtime, timezone.utc).isoformat().replace("+00:00", "Z")
    base = posixpath.basename(absolute.rstrip("/")) if not absolute.endswith("/.") else "."
    return source, {"name": base or "/", "size": info.st_size, "mode": go_mode(info.st_mode), "mtime": mtime,
                    "linkTarget": link}


def _header(stat: dict) -> str:
    return base64.b64encode(json.dumps(stat).encode()).decode()


def _head(engine, record, path: str, name: str) -> dict:
    from pallet.kernel.cli.container_ops import mounted_rootfs

    with mounted_rootfs(engine, record) as rootfs:
        return _stat(engine, record, rootfs, path, name)[1]


async def head(request: web.Request):
    path, record = _path(request), await record_of(request)
    stat = await blocking(_head, request.app["engine"], record, path, request.match_info["id"])
    return web.Response(status=200, headers={"X-Docker-Container-Path-Stat": _header(stat),
                                             "Content-Type": "application/json"})


class _Held:
    """The container's rootfs mounted across the request: stat first (a 404 is still possible), then the tar."""

    def __init__(self, engine, record):
        from pallet.kernel.cli.container_ops import mounted_rootfs

        self.context = mounted_rootfs(engine, record)
        self.rootfs = self.context.__enter__()

    def release(self) -> None:
        self.context.__exit__(None, None, None)


async def get(request: web.Request):
    import tarfile

    from pallet.kernel.api.tarstream import stream_response

    engine = request.app["engine"]
    path, record = _path(request), await record_of(request)
    held = await blocking(_Held, engine, record)
    try:
        source, stat = await blocking(_stat, engine, record, held.rootfs, path, request.match_info["id"])

        def produce(target) -> None:
            with tarfile.open(fileobj=target, mode="w|", format=tarfile.PAX_FORMAT) as archive:
                archive.add(str(source), arcname=stat["name"], recursive=True)

        response = web.StreamResponse(headers={"Content-Type": "application/x-tar",
                                               "X-Docker-Container-Path-Stat": _header(stat)})
        return await stream_response(request, response, produce)
    finally:
        await asyncio.shield(blocking(held.release))


def _no_overwrite_dir_non_dir(view, dest: str):
    """A check for ``_untar_into``: refuse, before anything is placed, to put a directory where a
    non-directory is or the other way round (Docker's ``noOverwriteDirNonDir``)."""

    def check(staging: Path) -> None:
        for directory, dirs, files in os.walk(staging):
            for entry in dirs + files:
                staged = Path(directory) / entry
                inner = posixpath.join(dest, staged.relative_to(staging).as_posix())
                target = view.host(view.resolve(inner, follow_last=False))
                if not os.path.lexists(target):
                    continue
                staged_dir = staged.is_dir() and not staged.is_symlink()
                target_dir = target.is_dir() and not target.is_symlink()
                if target_dir and not staged_dir:
                    raise ApiError(400, f'cannot overwrite directory "{inner}" with non-directory "{inner}"')
                if staged_dir and not target_dir:
                    raise ApiError(400, f'cannot overwrite non-directory "{inner}" with directory "{inner}"')

    return check


def _extract(engine, record, path: str, name: str, stream, keep_owner: bool, no_overwrite: bool) -> None:
    from pallet.kernel.cli.container_cp import _untar_into, container_view
    from pallet.kernel.cli.container_ops import mounted_rootfs

    with mounted_rootfs(engine, record) as rootfs:
        source, stat = _stat(engine, record, rootfs, path.rstrip("/") + "/" if path != "/" else path, name)
        if not stat["mode"] & GO_DIR:
            raise ApiError(400, "extraction point is not a directory")
        view = container_view(engine, record, rootfs)
        inner = "/" + "/".join(view.resolve(_absolute(path), follow_last=True))
        _root, _rest, bind, readonly = view.locate(view.resolve(inner))
        if bind is None and record.host_config.get("ReadonlyRootfs"):
            raise ApiError(403, "container rootfs is marked read-only")
        if readonly:
            raise ApiError(403, f"mounted volume is marked read-only: {bind}")
        shift = engine.storage.id_shift  # a userns-remapped home: "root" is the container's root
        _untar_into(view, inner, shift(0, 0) if shift else (0, 0), keep_owner, stream=stream,
                    check=_no_overwrite_dir_non_dir(view, inner) if no_overwrite else None,
                    what="in the request body")


async def put(request: web.Request):
    from pallet.kernel.api.tarstream import LoopReader

    path, record = _path(request), await record_of(request)
    reader = LoopReader(asyncio.get_running_loop(), request.content)
    await blocking(_extract, request.app["engine"], record, path, request.match_info["id"], reader,
                   query_bool(request, "copyUIDGID"), query_bool(request, "noOverwriteDirNonDir"))
    return web.Response(status=200)


ROUTES = [
    ("HEAD", "/containers/{id}/archive", head),
    ("GET", "/containers/{id}/archive", get),
    ("PUT", "/containers/{id}/archive", put),
]
