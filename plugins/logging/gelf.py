"""gelf: Graylog Extended Log Format 1.1 over ``udp://`` (compressed, chunked) or ``tcp://`` (null-framed).

As Docker's gelf driver: one JSON message per line with ``short_message``, ``host``, ``timestamp``,
``level`` (6 for stdout, 3 for stderr) and ``_container_id``, ``_container_name``, ``_image_id``,
``_image_name``, ``_created``, ``_tag``. Over UDP a message is gzip'ed (``gelf-compression-type``
gzip|zlib|none) and, when bigger than one datagram (1420 bytes), sent as GELF chunks (magic
``0x1e 0x0f``, an 8-byte message id, sequence number and count; at most 128).
"""

from __future__ import annotations

import json
import os

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, RemoteLogDriver
from pallet.kernel.errors import UsageError
from pallet.plugins.logging.remote import open_socket, parse_address

CHUNK = 1420
MAX_CHUNKS = 128


class GelfLog(RemoteLogDriver):
    name = "gelf"
    description = "GELF 1.1 over udp (chunked) or tcp"
    options_known = frozenset({"gelf-address", "gelf-compression-type", "gelf-compression-level",
                               "gelf-tcp-max-reconnect", "gelf-tcp-reconnect-delay"})

    @classmethod
    def probe(cls, home=None, options=None):
        return Availability.ok()

    @classmethod
    def check_options(cls, options):
        super().check_options(options)
        if "gelf-address" not in options:
            raise UsageError("gelf-address is a required parameter of the gelf log driver")
        parse_address(options["gelf-address"], ("udp", "tcp"), 12201, "gelf-address")
        if options.get("gelf-compression-type", "gzip") not in ("gzip", "zlib", "none"):
            raise UsageError(f'unknown gelf-compression-type "{options["gelf-compression-type"]}" (gzip, zlib, none)')
        level = options.get("gelf-compression-level", "1")
        if not (level.lstrip("-").isdigit() and -1 <= int(level) <= 9):
            raise UsageError(f'invalid gelf-compression-level "{level}" (-1 to 9)')

    def __init__(self, context):
        super().__init__(context)
        self.check_options(self.options)
        self.scheme, self.address, self.where = parse_address(self.options["gelf-address"], ("udp", "tcp"),
                                                              12201, "gelf-address")
        self.compression = self.options.get("gelf-compression-type", "gzip")
        self.level = int(self.options.get("gelf-compression-level", "1"))
        info = self.container
        self.extra = {"_container_id": info.get("id", ""), "_container_name": info.get("name", ""),
                      "_image_id": info.get("image-id", ""), "_image_name": info.get("image", ""),
                      "_created": info.get("created", ""), "_tag": self.tag()}
        self.host = os.uname().nodename
        self.sock = None

    def endpoint(self):
        return self.address

    def connect(self):
        self.sock = open_socket(self.scheme, self.where)

    def message(self, message) -> bytes:
        body = {"version": "1.1", "host": self.host, "short_message": message.line.decode("utf-8", "replace"),
                "timestamp": round(message.time_ns / 1e9, 6), "level": 3 if message.stream == "stderr" else 6,
                **self.extra}
        return json.dumps(body, separators=(",", ":")).encode()

    def send(self, message):
        data = self.message(message)
        if self.scheme == "tcp":
            self.sock.sendall(data + b"\0")
            return
        if self.compression == "gzip":
            import gzip

            data = gzip.compress(data, compresslevel=self.level if self.level >= 0 else 6)
        elif self.compression == "zlib":
            import zlib

            data = zlib.compress(data, self.level)
        for datagram in chunks(data):
            self.sock.send(datagram)


def chunks(data: bytes) -> list[bytes]:
    """``data`` as one datagram, or GELF chunks when it does not fit in one (too big: truncated to 128)."""
    if len(data) <= CHUNK:
        return [data]
    size = CHUNK - 12
    parts = [data[i:i + size] for i in range(0, len(data), size)][:MAX_CHUNKS]
    ident = os.urandom(8)
    return [b"\x1e\x0f" + ident + bytes([n, len(parts)]) + part for n, part in enumerate(parts)]


@hookimpl
def pallet_register_log_drivers(register):
    register("gelf", GelfLog)
