"""Docker's JSON progress streams (pull, push, load): work in a thread, its progress as JSON lines.

A failure before the first message is a plain error status (404 for an unknown image, 401 for
refused credentials), as Docker answers before it flushes any output; once the stream started, a
failure is its last message, ``{"errorDetail": {"message": …}, "error": …}``.
"""

from __future__ import annotations

import asyncio
import json
import threading

from aiohttp import web

from pallet.kernel.api.common import blocking
from pallet.kernel.errors import PalletError
from pallet.kernel.images.progress import Quiet


class JsonProgress(Quiet):
    """A pull's or push's progress as Docker's JSON messages, handed from the working thread to the response."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue):
        self.loop, self.queue = loop, queue
        self.layers: dict[str, list] = {}    # key -> [current, total, status]
        self.lock = threading.Lock()

    def put(self, message: dict) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, message)

    def message(self, text: str) -> None:
        self.put({"status": text})

    def start(self, key: str, total: int | None, status: str = "Downloading") -> None:
        with self.lock:
            self.layers[key] = [0, total or 0, status]
        self.put({"status": status, "progressDetail": {"current": 0, "total": total or 0}, "id": key})

    def advance(self, key: str, amount: int) -> None:
        with self.lock:
            layer = self.layers.setdefault(key, [0, 0, "Downloading"])
            layer[0] += amount
            current, total, status = layer
        # "Pulling fs layer" announces a layer; the bytes that follow are its download.
        status = "Downloading" if status == "Pulling fs layer" else status
        self.put({"status": status, "progressDetail": {"current": current, "total": total}, "id": key})

    def finish(self, key: str, status: str) -> None:
        self.put({"status": status, "progressDetail": {}, "id": key})

    def aux(self, data: dict) -> None:
        self.put({"progressDetail": {}, "aux": data})


def _line(message: dict) -> bytes:
    return json.dumps(message).encode() + b"\r\n"


def error_message(error: BaseException) -> dict:
    message = str(error) if isinstance(error, PalletError) else f"{type(error).__name__}: {error}"
    return {"errorDetail": {"message": message}, "error": message}


async def stream_work(request: web.Request, work, *args) -> web.StreamResponse:
    """Run ``work(progress, *args)`` in a thread and stream its progress; the messages it returns close the
    stream (a list of dicts)."""
    queue: asyncio.Queue = asyncio.Queue()
    progress = JsonProgress(asyncio.get_running_loop(), queue)
    working = asyncio.ensure_future(blocking(work, progress, *args))
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.wait([working, waiting], return_when=asyncio.FIRST_COMPLETED)
    if working.done() and working.exception() is not None and not waiting.done():
        waiting.cancel()
        raise working.exception()
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    while True:
        if waiting.done():
            await response.write(_line(waiting.result()))
            waiting = asyncio.ensure_future(queue.get())
            continue
        if working.done():
            break
        await asyncio.wait([working, waiting], return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    while not queue.empty():
        await response.write(_line(queue.get_nowait()))
    error = working.exception()
    for message in working.result() if error is None else [error_message(error)]:
        await response.write(_line(message))
    await response.write_eof()
    return response
