"""journald: systemd's native journal protocol, one datagram per line to ``/run/systemd/journal/socket``.

Fields as Docker's journald driver: ``MESSAGE``, ``CONTAINER_ID`` (12), ``CONTAINER_ID_FULL``,
``CONTAINER_NAME``, ``CONTAINER_TAG``, ``IMAGE_NAME``, ``SYSLOG_IDENTIFIER`` (the tag), ``PRIORITY``
(6 stdout, 3 stderr). A value holding a newline uses the protocol's binary form (name, newline,
little-endian 64-bit length, data). Where no journal socket exists (no systemd-journald, as in
most containers) the driver is unavailable and says so. ``PALLET_JOURNAL_SOCKET`` points it at
another socket (a journald of a chroot, or a test's listener).
"""

from __future__ import annotations

import os
import stat
import struct

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, RemoteLogDriver

SOCKET = "/run/systemd/journal/socket"


def socket_path() -> str:
    return os.environ.get("PALLET_JOURNAL_SOCKET") or SOCKET


class JournaldLog(RemoteLogDriver):
    name = "journald"
    description = "systemd journal (native protocol)"
    options_known = frozenset()

    @classmethod
    def probe(cls, home=None, options=None):
        path = socket_path()
        try:
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                return Availability.no(f"{path} is not a socket")
        except FileNotFoundError:
            return Availability.no(f"no journal socket at {path} (systemd-journald is not running here)")
        return Availability.ok()

    def __init__(self, context):
        super().__init__(context)
        info = self.container
        label = self.tag()
        self.fields = {"CONTAINER_ID": info.get("id", "")[:12], "CONTAINER_ID_FULL": info.get("id", ""),
                       "CONTAINER_NAME": info.get("name", ""), "CONTAINER_TAG": label,
                       "IMAGE_NAME": info.get("image", ""), "SYSLOG_IDENTIFIER": label}
        self.sock = None

    def endpoint(self):
        return socket_path()

    def connect(self):
        import socket

        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.connect(socket_path())

    def datagram(self, message) -> bytes:
        fields = {"MESSAGE": message.line, "PRIORITY": b"3" if message.stream == "stderr" else b"6",
                  **{k: v.encode() for k, v in self.fields.items()}}
        out = []
        for key, value in fields.items():
            if b"\n" in value:
                out.append(key.encode() + b"\n" + struct.pack("<Q", len(value)) + value + b"\n")
            else:
                out.append(key.encode() + b"=" + value + b"\n")
        return b"".join(out)

    def send(self, message):
        self.sock.send(self.datagram(message))


@hookimpl
def pallet_register_log_drivers(register):
    register("journald", JournaldLog)
