"""fluentd: the Fluentd forward protocol (msgpack over ``tcp://`` or ``unix://``), as Docker's fluentd driver.

Each line is one Message-mode entry ``[tag, time, record]``; ``record`` holds ``container_id``,
``container_name``, ``source`` (stdout|stderr) and ``log``. ``time`` is whole seconds, or an
EventTime (msgpack extension 0: seconds and nanoseconds) with ``fluentd-sub-second-precision=true``.
The tag is ``tag`` (default ``{{.ID}}``). msgpack is the well-kept ``msgpack`` package.
"""

from __future__ import annotations

import struct

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, RemoteLogDriver
from pallet.kernel.errors import UsageError
from pallet.plugins.logging.remote import open_socket, parse_address


class FluentdLog(RemoteLogDriver):
    name = "fluentd"
    description = "Fluentd forward protocol (msgpack) over tcp or unix"
    options_known = frozenset({"fluentd-address", "fluentd-sub-second-precision", "fluentd-async",
                               "fluentd-buffer-limit", "fluentd-retry-wait", "fluentd-max-retries",
                               "fluentd-request-ack"})

    @classmethod
    def probe(cls, home=None, options=None):
        try:
            import msgpack  # noqa: F401
        except ImportError:
            return Availability.no("the Python package msgpack is not installed (pip install msgpack)")
        return Availability.ok()

    @classmethod
    def check_options(cls, options):
        super().check_options(options)
        cls._address(options)
        if options.get("fluentd-sub-second-precision", "false").lower() not in ("true", "false"):
            raise UsageError("fluentd-sub-second-precision must be true or false")

    @staticmethod
    def _address(options):
        text = options.get("fluentd-address", "localhost:24224")
        if "://" not in text:
            text = "tcp://" + text
        return parse_address(text, ("tcp", "unix"), 24224, "fluentd-address")

    def __init__(self, context):
        super().__init__(context)
        import msgpack

        self.check_options(self.options)
        self.packer = msgpack.Packer()
        self.msgpack = msgpack
        self.scheme, self.address, self.where = self._address(self.options)
        self.subsecond = self.options.get("fluentd-sub-second-precision", "false").lower() == "true"
        self.label = self.tag()
        self.sock = None

    def endpoint(self):
        return self.address

    def connect(self):
        self.sock = open_socket(self.scheme, self.where)

    def entry(self, message) -> bytes:
        seconds, ns = divmod(message.time_ns, 1_000_000_000)
        when = self.msgpack.ExtType(0, struct.pack(">II", seconds, ns)) if self.subsecond else seconds
        record = {"container_id": self.container.get("id", ""), "container_name": "/" + self.container.get("name", ""),
                  "source": message.stream, "log": message.line.decode("utf-8", "replace")}
        return self.packer.pack([self.label, when, record])

    def send(self, message):
        self.sock.sendall(self.entry(message))


@hookimpl
def pallet_register_log_drivers(register):
    register("fluentd", FluentdLog)
