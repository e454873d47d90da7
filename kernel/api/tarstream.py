"""Tar streams between kernel functions in worker threads and HTTP bodies, in both directions.

``export`` and ``archive`` write tar streams with :mod:`tarfile` the way the CLI does (to a
file object); here that file object hands its chunks to the event loop, and the thread waits
when the client reads slower than the tar is made (a few chunks in flight, never the whole tar).
An uploaded tar is read the same way: the thread asks the loop for the next piece of the body.
"""

from __future__ import annotations

import asyncio
import io
import threading

from aiohttp import web

CHUNK = 1 << 16
IN_FLIGHT = 8


class _LoopWriter(io.RawIOBase):
    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue):
        self.loop, self.queue = loop, queue
        self.slots = threading.Semaphore(IN_FLIGHT)
        self.gone = False
        self.pending = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.pending += data
        if len(self.pending) >= CHUNK:
            self._send()
        return len(data)

    def _send(self) -> None:
        while not self.slots.acquire(timeout=0.5):
            if self.gone:
                break
        if self.gone:
            raise BrokenPipeError("the client went away")
        chunk, self.pending = bytes(self.pending), bytearray()
        self.loop.call_soon_threadsafe(self.queue.put_nowait, chunk)

    def finish(self, ok: bool) -> None:
        if ok and self.pending and not self.gone:
            self._send()
        self.loop.call_soon_threadsafe(self.queue.put_nowait, None)


async def stream_response(request: web.Request, response: web.StreamResponse, produce) -> web.StreamResponse:
    """Prepare ``response`` and send what ``produce(fileobj)`` writes, run in a worker thread.

    A failure once the body has started cannot become an error status: the connection is cut,
    so the client sees a truncated stream rather than a complete-looking one.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    writer = _LoopWriter(loop, queue)

    def run() -> None:
        ok = False
        try:
            produce(writer)
            ok = True
        finally:
            writer.finish(ok)

    await response.prepare(request)
    task = asyncio.ensure_future(asyncio.to_thread(run))
    try:
        while True:
            chunk = await queue.get()
            if chunk is None:
                break
            await response.write(chunk)
            writer.slots.release()
    finally:
        writer.gone = True
    try:
        await task
    except Exception:
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


class LoopReader(io.RawIOBase):
    """A readable file for a worker thread over a request body (``request.content``), read as it arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop, content):
        self.loop, self.content = loop, content

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = asyncio.run_coroutine_threadsafe(self.content.read(len(buffer)), self.loop).result()
        buffer[:len(data)] = data
        return len(data)
