"""Hijacked connections: ``101 UPGRADED``, Docker's 8-byte stream frames, and the client's input."""

from __future__ import annotations

import asyncio
import struct

from aiohttp import web

STDIN, STDOUT, STDERR = 0, 1, 2


def frame(stream: int, data: bytes) -> bytes:
    """Docker's multiplexed frame: stream byte, three zero bytes, big-endian length, payload."""
    return struct.pack(">BxxxL", stream, len(data)) + data


class Input:
    """The client's bytes after the upgrade, as aiohttp's payload parser receives them; EOF on half-close."""

    def __init__(self):
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def feed_data(self, data: bytes):
        self.queue.put_nowait(bytes(data))
        return False, b""

    def feed_eof(self):
        self.queue.put_nowait(b"")


def keep_half_closed() -> None:
    """Let a hijacked client half-close (its stdin is done) and still get the rest of the output.

    asyncio closes a transport whose protocol's ``eof_received`` returns a false value, which
    aiohttp's does; for a connection whose input goes to an :class:`Input`, EOF is passed on
    instead and the transport kept open. Installed once by the server.
    """
    from aiohttp.web_protocol import RequestHandler

    original = RequestHandler.eof_received
    if getattr(original, "_pallet", False):
        return

    def eof_received(self):
        parser = getattr(self, "_payload_parser", None)
        if isinstance(parser, Input):
            parser.feed_eof()
            return True
        return original(self)

    eof_received._pallet = True
    RequestHandler.eof_received = eof_received


class Hijacked:
    """One taken-over connection: write frames (or raw bytes with a TTY), read input, close."""

    def __init__(self, request: web.Request, tty: bool):
        self.request, self.tty = request, tty
        self.transport = request.transport
        self.input = Input()
        self.response: web.StreamResponse | None = None

    async def start(self) -> None:
        upgrade = "upgrade" in self.request.headers.get("Connection", "").lower()
        response = web.StreamResponse(status=101 if upgrade else 200, reason="UPGRADED" if upgrade else "OK")
        response.headers["Content-Type"] = ("application/vnd.docker.raw-stream" if self.tty
                                            else "application/vnd.docker.multiplexed-stream")
        if upgrade:
            response.headers["Connection"] = "Upgrade"
            response.headers["Upgrade"] = "tcp"
        response.force_close()
        await response.prepare(self.request)
        self.response = response
        self.request.protocol.set_parser(self.input)

    def write(self, stream: int, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("client went away")
        self.transport.write(data if self.tty else frame(stream, data))

    async def drain(self) -> None:
        await asyncio.sleep(0)

    @property
    def gone(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.transport.close()
