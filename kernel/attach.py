"""Attach this terminal to a running container through its monitor's attach socket; detach with a key sequence.

``run -it`` starts the container under a detached monitor and attaches at once, so Ctrl-P Ctrl-Q
(or ``--detach-keys``) can leave it running; ``pallet attach`` joins one later. The protocol is
the log pump's (:class:`pallet.kernel.logpump.AttachServer`).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import time
from pathlib import Path

from pallet.kernel.errors import PalletError

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def key_sequence(spec: str | None) -> bytes:
    """``ctrl-p,ctrl-q`` -> b"\\x10\\x11"; a plain character stands for itself."""
    keys = []
    for key in (spec or DEFAULT_DETACH_KEYS).split(","):
        keys.append(ord(key[5:].upper()) & 0x1F if key.startswith("ctrl-") else ord(key))
    return bytes(keys)


class DetachMatcher:
    """Holds back a prefix of the detach sequence until it completes (detach) or breaks (sent as typed)."""

    def __init__(self, sequence: bytes):
        self.sequence, self.pending = sequence, b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        out = b""
        for byte in data:
            candidate = self.pending + bytes([byte])
            if self.sequence.startswith(candidate):
                self.pending = candidate
                if candidate == self.sequence:
                    return out, True
                continue
            out += self.pending
            self.pending = b""
            if self.sequence[:1] == bytes([byte]):
                self.pending = bytes([byte])
            else:
                out += bytes([byte])
        return out, False


def connect(run_dir: Path, timeout: float = 5.0) -> socket.socket:
    """Connect to the monitor's socket (it is made just after the container starts: retry briefly)."""
    from pallet.kernel.monitor import ATTACH_SOCKET

    deadline = time.monotonic() + timeout
    directory = os.open(run_dir, os.O_PATH | os.O_CLOEXEC)
    try:
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
            try:
                sock.connect(f"/proc/self/fd/{directory}/{ATTACH_SOCKET}")
                return sock
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() > deadline:
                    raise PalletError("cannot attach: the container's monitor does not answer") from None
                time.sleep(0.005)
    finally:
        os.close(directory)


def open_session(run_dir: Path, timeout: float = 5.0) -> tuple[socket.socket, int | None, bool]:
    """Connect and read the monitor's hello: the socket, the container's input fd (if it keeps one), and
    whether it has a terminal. A monitor that ends (its container exited) while our connection still waits
    in its backlog resets it: that is the same "gone" as no socket at all, a PalletError."""
    sock = connect(run_dir, timeout)
    try:
        hello, fds, _flags, _addr = socket.recv_fds(sock, 16, 1)
    except ConnectionError:
        sock.close()
        raise PalletError("cannot attach: the container's monitor ended") from None
    except BaseException:
        sock.close()
        raise
    if not hello.startswith(b"H"):
        sock.close()
        for fd in fds:
            os.close(fd)
        raise PalletError("cannot attach: unexpected answer from the container's monitor")
    return sock, (fds[0] if fds else None), hello[1:2] == b"t"


def attach(run_dir: Path, interactive: bool, detach_keys: str | None = None, streams=("stdout", "stderr")):
    """Stream the container's output here and our input there; return its exit code, or None on detach."""
    from pallet.kernel.stdio import raw_terminal

    sock, stdin_fd, tty = open_session(run_dir)
    with sock:
        if not interactive and stdin_fd is not None:
            os.close(stdin_fd)
            stdin_fd = None
        terminal = raw_terminal(stdin_fd) if tty and stdin_fd is not None and os.isatty(0) else contextlib.nullcontext()
        try:
            with terminal:
                return _pump(sock, stdin_fd, tty, DetachMatcher(key_sequence(detach_keys)), set(streams))
        finally:
            if stdin_fd is not None:
                os.close(stdin_fd)


def _pump(sock: socket.socket, stdin_fd: int | None, tty: bool, matcher: DetachMatcher, streams: set[str]):
    out = {b"1": 1 if "stdout" in streams else None, b"2": 2 if "stderr" in streams else None}
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, "socket")
    if stdin_fd is not None:
        selector.register(0, selectors.EVENT_READ, "stdin")
    try:
        while True:
            for key, _mask in selector.select():
                if key.data == "socket":
                    message = sock.recv(1 << 17)
                    if not message:
                        raise PalletError("the container's monitor went away before the container exited")
                    kind, data = message[:1], message[1:]
                    if kind == b"x":
                        return int(data)
                    if out.get(kind) is not None:
                        _write_all(out[kind], data)
                    continue
                data = os.read(0, 65536)
                if not data:
                    selector.unregister(0)  # a pty keeps the container's side open; a pipe gets no more
                    continue
                forward, detached = matcher.feed(data) if tty else (data, False)
                if forward:
                    _write_all(stdin_fd, forward)
                if detached:
                    return None
    finally:
        selector.close()


def _write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, OSError):
        while data:
            data = data[os.write(fd, data):]
