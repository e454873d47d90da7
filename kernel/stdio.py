"""A container's standard streams: reading json-file logs, output pumps, console sockets and the interactive pty."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import signal
import struct
import termios
import tty
from pathlib import Path


def log_files(path: Path) -> list[Path]:
    """The json-file log and its rotated files (``.N``, ``.N.gz``), oldest first."""
    path = Path(path)
    rotated = []
    for candidate in path.parent.glob(path.name + ".*"):
        number = candidate.name[len(path.name) + 1:].removesuffix(".gz")
        if (number.isascii() and number.isdigit()):
            rotated.append((int(number), candidate))
    return [p for _n, p in sorted(rotated, reverse=True)] + [path]


def read_log(path: Path):
    """Yield (stream, time, text) from a json-file log and its rotated files; a torn last line is skipped."""
    import gzip

    for part in log_files(path):
        try:
            handle = gzip.open(part, "rb") if part.suffix == ".gz" else open(part, "rb")
        except FileNotFoundError:
            continue
        with handle:
            try:
                for raw in handle:
                    with contextlib.suppress(ValueError):
                        entry = json.loads(raw)
                        yield entry["stream"], entry["time"], entry["log"]
            except (OSError, EOFError):  # rotated away (or a gzip being written) while read
                continue


def pump(pid: int, sources: dict[int, str], log: JsonLog | None, echo: dict[str, int] | None,
         stdin_to: int | None = None) -> None:
    """Copy output fds to the log and/or echo fds until the process ``pid`` exits and the fds drain.

    ``sources`` maps a readable fd to its stream name ("stdout"/"stderr"); ``stdin_to`` is an fd to
    which our own stdin is copied (interactive runs).
    """
    sel = selectors.DefaultSelector()
    for fd in sources:
        sel.register(fd, selectors.EVENT_READ, "out")
    if stdin_to is not None:
        sel.register(0, selectors.EVENT_READ, "in")
    pidfd = os.pidfd_open(pid)
    sel.register(pidfd, selectors.EVENT_READ, "exit")
    open_fds = set(sources)
    exited = False
    try:
        while open_fds:
            timeout = 0.2 if exited else None  # after exit, drain what is left without blocking forever
            events = sel.select(timeout)
            if exited and not events:
                break
            for key, _mask in events:
                if key.data == "exit":
                    exited = True
                    sel.unregister(pidfd)
                    continue
                if key.data == "in":
                    data = _read(0)
                    if not data:
                        sel.unregister(0)
                        if stdin_to not in sources:  # a pipe: EOF reaches the process; a pty stays open
                            with contextlib.suppress(OSError):
                                os.close(stdin_to)
                        continue
                    with contextlib.suppress(OSError):
                        os.write(stdin_to, data)
                    continue
                data = _read(key.fd)
                if not data:
                    sel.unregister(key.fd)
                    open_fds.discard(key.fd)
                    continue
                stream = sources[key.fd]
                if log is not None:
                    log.write(stream, data)
                if echo is not None and stream in echo:
                    _write_all(echo[stream], data)
    finally:
        sel.close()
        os.close(pidfd)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO from a pty master once the slave side is closed
        return b""


def _write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, OSError):
        while data:
            data = data[os.write(fd, data):]


# --- terminals ------------------------------------------------------------------------------

class ConsoleSocket:
    """The OCI ``--console-socket``: the runtime sends the pty master over it (SCM_RIGHTS).

    It lives in a fresh private directory under /tmp because a unix socket path must be shorter
    than 108 bytes, which a bundle path under a deep ``--run-root`` may not be.
    """

    def __init__(self):
        import socket  # only -t needs it: not imported by every "run"
        import tempfile

        self.dir = Path(tempfile.mkdtemp(prefix="pallet-console-"))
        self.path = self.dir / "sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.bind(str(self.path))
        self.sock.listen(1)

    def receive_master(self, timeout: float = 10) -> int:
        import socket

        self.sock.settimeout(timeout)
        conn, _addr = self.sock.accept()
        with conn:
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
        if not fds:
            raise OSError("the runtime sent no terminal over the console socket")
        return fds[0]

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            self.dir.rmdir()


def copy_window_size(src_fd: int, dst_fd: int) -> None:
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(src_fd, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(dst_fd, termios.TIOCSWINSZ, size)


@contextlib.contextmanager
def raw_terminal(master: int):
    """Put our terminal in raw mode (so Ctrl-C travels to the container's pty) and follow window resizes."""
    interactive = os.isatty(0)
    saved = termios.tcgetattr(0) if interactive else None
    previous = None
    if interactive:
        copy_window_size(0, master)
        tty.setraw(0, termios.TCSANOW)  # keep what was typed ahead (TCSAFLUSH would drop it)
        previous = signal.signal(signal.SIGWINCH, lambda *_: copy_window_size(0, master))
    try:
        yield
    finally:
        if interactive:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
            signal.signal(signal.SIGWINCH, previous or signal.SIG_DFL)
