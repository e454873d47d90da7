"""Image archives: ``GET /images/{name}/get`` and ``GET /images/get`` (save), ``POST /images/load``, and
``POST /images/create?fromSrc=-`` (import a rootfs tarball).

Through the CLI's code: ``archive.save``/``archive.load`` (the docker-archive format ``docker
load`` and ``pallet load`` read) and ``import_tarball``. A save streams the tar while it is
written, with back-pressure (a slow client holds the writer, not the server's memory); uploads
are spooled to a temp file in the store's ``tmp/`` and removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile

from aiohttp import web

from pallet.kernel.api.common import blocking
from pallet.kernel.api.errors import ApiError
from pallet.kernel.api.progress import stream_work
from pallet.kernel.errors import NotFound, PalletError

UPLOAD_LIMIT = 64 << 30   # an archive larger than this is refused while it is being received
BUFFERED_CHUNKS = 64      # tarfile writes 10 KiB records: at most ~640 KiB waits for a slow client


def _store(engine):
    from pallet.kernel.images import ImageStore

    return ImageStore(engine)


# --- save -------------------------------------------------------------------------------

class _ToResponse:
    """The file the saving thread writes: each chunk waits for room in a bounded queue the handler drains."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue):
        self.loop, self.queue = loop, queue
        self.gone = False

    def write(self, data) -> int:
        if self.gone:
            raise OSError("the client went away")
        if data:
            asyncio.run_coroutine_threadsafe(self.queue.put(bytes(data)), self.loop).result()
        return len(data)

    def flush(self) -> None:
        pass


def _records(engine, names: list[str]):
    store = _store(engine)
    found = []
    for name in names:
        try:
            found.append((name, store.resolve(name)))
        except NotFound:
            raise ApiError(404, f"No such image: {name}") from None
    return store, found


async def _save(request: web.Request, names: list[str]):
    from pallet.kernel.images import archive

    if not names:
        raise ApiError(400, "no image names given (names=…)")
    store, records = await blocking(_records, request.app["engine"], names)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=BUFFERED_CHUNKS)
    writer = _ToResponse(loop, queue)

    def save():
        try:
            archive.save(store, records, None, "docker-archive", writer)
        finally:
            asyncio.run_coroutine_threadsafe(queue.put(None), loop)

    response = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
    await response.prepare(request)
    saving = asyncio.ensure_future(blocking(save))
    try:
        while (chunk := await queue.get()) is not None:
            await response.write(chunk)
    except (ConnectionResetError, asyncio.CancelledError):
        writer.gone = True
        while not queue.empty():   # unblock the writer; its next write fails and the save ends
            queue.get_nowait()
        raise
    try:
        await saving
    except Exception:
        if request.transport is not None:   # a truncated tar must not look complete: cut the connection
            request.transport.close()
        return response
    await response.write_eof()
    return response


async def save_one(request: web.Request):
    return await _save(request, [request.match_info["name"]])


async def save_many(request: web.Request):
    return await _save(request, request.query.getall("names", []))


# --- uploads ----------------------------------------------------------------------------

@contextlib.contextmanager
def _temp_path(engine):
    store = _store(engine)
    store.blobs.tmp.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(dir=store.blobs.tmp, prefix="api-upload-")
    os.close(fd)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


async def _receive(request: web.Request, path: str) -> int:
    size = 0
    with open(path, "wb") as handle:
        async for chunk in request.content.iter_chunked(1 << 20):
            size += len(chunk)
            if size > UPLOAD_LIMIT:
                raise ApiError(413, f"upload larger than {UPLOAD_LIMIT} bytes")
            await blocking(handle.write, chunk)
    return size


def _load(progress, engine, path: str) -> list[dict]:
    from pallet.kernel.images import archive
    from pallet.kernel.trust.enforce import admit

    engine.storage  # noqa: B018 - a storage driver that cannot work here fails before anything is stored
    admit(engine, "docker-archive", path)   # archives carry no signatures: only accept/reject rules pass
    try:
        lines = archive.load(_store(engine), path)
    except PalletError as exc:
        if str(exc).startswith("invalid archive"):
            raise ApiError(400, str(exc)) from None
        raise
    return [{"stream": line + "\n"} for line in lines]


async def load(request: web.Request):
    """``POST /images/load``: Docker's JSON messages (``{"stream": "Loaded image: …\\n"}``), with or without ``quiet``
    (pallet reports no per-layer progress for a load, so both say the same)."""
    engine = request.app["engine"]
    with _temp_path(engine) as path:
        if not await _receive(request, path):
            raise ApiError(400, "invalid archive: the request body is empty")
        return await stream_work(request, _load, engine, path)


# --- import -----------------------------------------------------------------------------

def _import(progress, engine, path: str, repository: str | None, changes: list[str], message: str) -> list[dict]:
    from pallet.kernel.cli.image import import_tarball

    with open(path, "rb") as stream:
        image_id = import_tarball(engine, stream, repository, changes, message, "-")
    return [{"status": image_id}]


def _repository(query) -> str | None:
    """``repo`` (``name`` or ``name:tag``) and ``tag`` as one reference, checked; None when not named."""
    from pallet.kernel.images import reference as refs

    repo, tag = query.get("repo") or "", query.get("tag") or ""
    if not repo:
        return None
    name = f"{repo}:{tag}" if tag else repo
    try:
        refs.parse(name)
    except PalletError as exc:
        raise ApiError(400, str(exc)) from None
    return name


async def import_image(request: web.Request):
    """``POST /images/create?fromSrc=-``: the body is a rootfs tarball (plain or gzip); the answer is Docker's
    ``{"status": "sha256:…"}``."""
    engine = request.app["engine"]
    source = request.query.get("fromSrc")
    if source != "-":
        raise ApiError(400, f'importing from "{source}" is not supported by pallet serve: use fromSrc=- and send '
                            "the tarball as the request body")
    repository = _repository(request.query)
    changes = request.query.getall("changes", [])
    with _temp_path(engine) as path:
        await _receive(request, path)
        return await stream_work(request, _import, engine, path, repository, changes,
                                 request.query.get("message") or "")


ROUTES = [
    ("GET", "/images/get", save_many),
    ("GET", "/images/{name:.+}/get", save_one),
    ("POST", "/images/load", load),
]
