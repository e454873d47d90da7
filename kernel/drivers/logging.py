"""Log driver contract: where a container's stdout/stderr lines go (Docker's logging drivers).

A log driver is opened once per container start, in the container's monitor, with
``DriverContext(home=<the container's directory>, options=<its --log-opt>)``; the monitor then calls
:meth:`LogDriver.log` for every line and :meth:`LogDriver.close` when the container exited. The
container's identity (for ``tag`` templates and message fields) is in ``options`` under the reserved
``pallet.*`` keys (:data:`CONTAINER_KEYS`); :attr:`LogDriver.container` holds them without the prefix
and :attr:`LogDriver.options` only the user's options.

``pallet logs`` reads a local json-file copy that the monitor keeps beside a driver whose
:attr:`LogDriver.reads_locally` is False (Docker's "dual logging"), bounded to
:data:`LOCAL_COPY` bytes; drivers that write such a file themselves (json-file, local) say True.

A driver that sends to a remote endpoint subclasses :class:`RemoteLogDriver`: its ``send`` runs
in a background thread, behind a buffer bounded by ``max-buffer-size`` (default 1 MiB; the oldest
lines are dropped past it), so a slow or down endpoint never blocks the container's output. That is
Docker's ``mode=non-blocking``, and pallet's default for remote drivers (Docker's default is
``blocking``: a down syslog server stalls the service). ``--log-opt mode=blocking`` asks for Docker's
default: nothing is dropped, and once the buffer is full the container's writes wait for the
endpoint. The first failure is reported once (:meth:`LogDriver.report`), not once per line.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import threading
import time
from dataclasses import dataclass

from pallet.kernel.drivers.base import Driver
from pallet.kernel.errors import UsageError

CONTAINER_KEYS = ("pallet.id", "pallet.name", "pallet.image", "pallet.image-id", "pallet.created")
LOCAL_COPY = (10 * 1024 * 1024, 2)     # dual logging: 2 files of 10 MiB at most
ERROR_FILE = "log-driver-error"          # in the container's directory: the first failure, for `logs`
COMMON_OPTIONS = frozenset({"tag", "labels", "labels-regex", "env", "env-regex", "mode", "max-buffer-size"})


@dataclass(frozen=True)
class LogMessage:
    """One line of output: ``line`` without its newline; ``partial`` if the output did not end it."""

    stream: str          # stdout | stderr
    line: bytes
    time_ns: int
    partial: bool = False


class LogDriver(Driver):
    """Receive a container's output lines. Subclasses set ``options_known`` and implement ``log``."""

    kind = "logging"
    reads_locally = False              # True: the driver's own file serves `pallet logs`
    options_known: frozenset = frozenset()

    def __init__(self, context):
        super().__init__(context)
        self.container = {k.split(".", 1)[1]: v for k, v in self.options.items() if k in CONTAINER_KEYS}
        self.options = {k: v for k, v in self.options.items() if k not in CONTAINER_KEYS}
        self._reported = False

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Refuse a ``--log-opt`` the driver does not know, in Docker's words (UsageError); at create time."""
        for key in options:
            if key not in cls.options_known and key not in COMMON_OPTIONS:
                raise UsageError(f"unknown log opt '{key}' for {cls.driver_name()} log driver")
        mode = options.get("mode", "")
        if mode not in ("", "blocking", "non-blocking"):
            raise UsageError(f"logger: logging mode not supported: {mode}")
        if "max-buffer-size" in options:
            if mode == "blocking":
                raise UsageError("logger: max-buffer-size option is only supported with 'mode=non-blocking'")
            from pallet.kernel.runopts import parse_size

            parse_size(options["max-buffer-size"], "--log-opt max-buffer-size")

    @classmethod
    def driver_name(cls) -> str:
        return getattr(cls, "name", "") or cls.__name__

    def log(self, message: LogMessage) -> None:
        """Take one line. Must not block for long: the container's output waits meanwhile."""
        raise NotImplementedError

    def close(self) -> None:
        """The container exited: flush what is buffered (briefly) and release sockets and files."""

    def tag(self, default: str = "{{.ID}}") -> str:
        """The ``tag`` option rendered: Docker's ``{{.ID}}`` (12 chars), ``{{.FullID}}``, ``{{.Name}}``,
        ``{{.ImageName}}``, ``{{.ImageID}}``, ``{{.ImageFullID}}``, ``{{.DaemonName}}``."""
        info = self.container
        values = {"ID": info.get("id", "")[:12], "FullID": info.get("id", ""), "Name": info.get("name", ""),
                  "ImageName": info.get("image", ""), "ImageID": info.get("image-id", "").split(":")[-1][:12],
                  "ImageFullID": info.get("image-id", ""), "DaemonName": "pallet"}

        def field(found):
            key = found.group(1)
            if key not in values:
                raise UsageError(f'log opt tag: unknown field "{key}" in template "{template}"')
            return values[key]

        template = self.options.get("tag") or default
        return re.sub(r"\{\{\s*\.(\w+)\s*\}\}", field, template)

    def report(self, problem: str) -> None:
        """Say once (per container start) that the driver cannot deliver: a line on the monitor's stderr
        and in ``<home>/log-driver-error``, which ``pallet logs`` prints as a warning."""
        if self._reported:
            return
        self._reported = True
        text = f"log driver {self.driver_name()}: {problem}\n"
        with contextlib.suppress(OSError):
            tmp = self.home / (ERROR_FILE + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, self.home / ERROR_FILE)
        with contextlib.suppress(OSError):
            os.write(2, ("pallet: warning: " + text).encode())


class RemoteLogDriver(LogDriver):
    """A driver that ships lines over the network: ``connect`` and ``send`` run in a sender thread.

    ``log`` only appends to a bounded buffer; the thread connects (again, with back-off up to 5 s,
    after an error), sends, and reports the first failure once. ``close`` waits up to 2 s for the
    buffer to drain, then gives up on the rest (counted in the report).
    """

    options_known = frozenset()

    def __init__(self, context):
        super().__init__(context)
        from pallet.kernel.runopts import parse_size

        self.limit = parse_size(self.options.get("max-buffer-size", "1m"), "--log-opt max-buffer-size")
        self.blocking = self.options.get("mode") == "blocking"
        self.buffer: collections.deque = collections.deque()
        self.buffered = 0
        self.dropped = 0
        self.lock = threading.Condition()
        self.closing = False
        self.thread = threading.Thread(target=self._run, name=f"log-{self.driver_name()}", daemon=True)
        self.thread.start()

    sock = None   # the open socket, for drivers that keep one (then ``disconnect`` needs no override)

    def connect(self) -> None:
        """Open the connection (raise OSError when the endpoint is down)."""

    def send(self, message: LogMessage) -> None:
        """Deliver one message on the open connection (raise OSError on failure)."""
        raise NotImplementedError

    def disconnect(self) -> None:
        """Drop the connection after a failure or at close: closes ``self.sock`` if one is open."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def log(self, message: LogMessage) -> None:
        with self.lock:
            if self.blocking:   # back-pressure: the pump stops reading, so the container's pipe fills
                while self.buffer and self.buffered + len(message.line) + 64 > self.limit and not self.closing:
                    self.lock.wait()
            self.buffer.append(message)
            self.buffered += len(message.line) + 64
            while self.buffered > self.limit and len(self.buffer) > 1:
                old = self.buffer.popleft()
                self.buffered -= len(old.line) + 64
                self.dropped += 1
            self.lock.notify()

    def _run(self) -> None:
        connected, delay = False, 0.1
        while True:
            with self.lock:
                while not self.buffer and not self.closing:
                    self.lock.wait()
                if not self.buffer and self.closing:
                    break
                message = self.buffer[0]
            try:
                if not connected:
                    self.connect()
                    connected, delay = True, 0.1
                self.send(message)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    self.disconnect()
                connected = False
                full = "the container waits when it is full" if self.blocking else "the oldest dropped"
                self.report(f"cannot deliver to {self.endpoint()}: {exc.strerror or exc}; "
                            f"lines are buffered (at most {self.limit} bytes, {full})")
                with self.lock:   # new lines notify too: they must not cut the back-off short
                    deadline = time.monotonic() + delay
                    while not self.closing and (left := deadline - time.monotonic()) > 0:
                        self.lock.wait(left)
                    if self.closing:
                        break
                delay = min(delay * 2, 5.0)
                continue
            with self.lock:
                if self.buffer and self.buffer[0] is message:
                    self.buffer.popleft()
                    self.buffered -= len(message.line) + 64
                    self.lock.notify_all()
        with contextlib.suppress(OSError):
            self.disconnect()

    def release(self) -> None:
        """The container exited: a ``mode=blocking`` ``log`` waits no more (the rest of its output is
        buffered within the bound), so a down endpoint cannot keep the exit from being recorded."""
        with self.lock:
            self.closing = True
            self.lock.notify_all()

    def endpoint(self) -> str:
        """Where the driver sends, for messages."""
        return self.options.get(f"{self.driver_name()}-address", "")

    def close(self) -> None:
        deadline = time.monotonic() + 2
        with self.lock:
            while self.buffer and not self._reported and time.monotonic() < deadline and self.thread.is_alive():
                self.lock.wait(0.05)
            self.closing = True
            self.lock.notify_all()
        self.thread.join(timeout=1)
