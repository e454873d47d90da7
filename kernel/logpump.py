"""The idle half of a detached container's monitor: copy output to the json-file log, reap, hand over.

The monitor forks from the CLI (fast start), starts the container, then ``execve``s this file
in a bare interpreter (``python -I -S``, stdlib only) so the process that sits beside a
long-running container holds ~8 MB instead of the CLI's ~23 MB. It stays the container's
parent and subreaper (both survive ``execve``). When the container exits it hands the exit to the
root's engine, or loads pallet again, and :func:`pallet.kernel.exit_handler.after_exit` records the exit
and cleans up. A container that ends within the monitor's first 50 ms never gets here: the monitor runs
:func:`pump` itself, pallet still loaded (``monitor._record_quick_exit``).

Importable too, for :class:`JsonLog`.
"""

import os
import select
import time
from _json import encode_basestring as _quote


LINE_MAX = 16 * 1024   # Docker's copier: a longer line is logged as several entries, all but the last partial


def long_line_pieces(rest):
    """``(pieces, left)``: ``rest`` (output with no newline) cut into pieces of at most LINE_MAX bytes while
    it is longer, each cut moved back to the start of a UTF-8 character (the byte after the cut tells, so
    ``left`` keeps up to LINE_MAX bytes). A program that prints without newlines (a progress bar) so never
    grows the pump's memory."""
    pieces = []
    while len(rest) > LINE_MAX:
        cut = LINE_MAX
        while cut > LINE_MAX - 4 and rest[cut] & 0xC0 == 0x80:   # a continuation byte: not a character start
            cut -= 1
        pieces.append(rest[:cut])
        rest = rest[cut:]
    return pieces, rest


def rfc3339_nano(ns=None):
    ns = time.time_ns() if ns is None else ns
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".%09dZ" % frac


class JsonLog:
    """Docker's json-file driver: one ``{"log", "stream", "time"}`` object per line of output.

    With ``max_size`` the file is rotated as Docker's is: past ``max_size`` bytes it becomes
    ``<path>.1`` (gzip'ed to ``<path>.1.gz`` with ``compress``), older ones shift up, and at most
    ``max_file`` files exist, so the log never holds more than ``max_size × max_file`` (one batch of
    output more at most). ``max_file`` 1 truncates in place.
    """

    def __init__(self, path, max_size=0, max_file=1, compress=False):
        self.path, self.max_size, self.max_file, self.compress = str(path), max_size, max(1, max_file), compress
        self.fd = self._open(0)
        self.size = os.fstat(self.fd).st_size
        self.partial = {}

    def _open(self, extra):
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | extra, 0o640)

    def _entry(self, text, stream, now):
        return ('{"log":%s,"stream":"%s","time":"%s"}\n' % (_quote(text), stream, now)).encode()

    def _put(self, out):
        if self.max_size and self.size and self.size + len(out) > self.max_size:
            self._rotate()
        while out:
            written = os.write(self.fd, out)
            self.size += written
            out = out[written:]

    def _rotate(self):
        os.close(self.fd)
        if self.max_file > 1:
            suffix = ".gz" if self.compress else ""
            for n in range(self.max_file - 1, 1, -1):
                for ext in (suffix, "") if suffix else ("",):
                    try:
                        os.replace("%s.%d%s" % (self.path, n - 1, ext), "%s.%d%s" % (self.path, n, ext))
                    except FileNotFoundError:
                        pass
            if self.compress:
                import gzip
                import shutil

                tmp = self.path + ".1.gz.tmp"
                with open(self.path, "rb") as source, gzip.open(tmp, "wb", compresslevel=1) as target:
                    shutil.copyfileobj(source, target, 1 << 20)
                os.replace(tmp, self.path + ".1.gz")
                os.unlink(self.path)
            else:
                os.replace(self.path, self.path + ".1")
            self.fd = self._open(0)
        else:
            self.fd = self._open(os.O_TRUNC)
        self.size = 0

    def write(self, stream, data, read_ns=None):
        """Log ``data`` read from ``stream`` (at ``read_ns``, else now): whole lines; a line's start waits
        for its end, up to LINE_MAX bytes of it (a longer line goes in pieces)."""
        data = self.partial.pop(stream, b"") + data
        cut = data.rfind(b"\n") + 1
        pieces, self.partial[stream] = long_line_pieces(data[cut:])
        if not cut and not pieces:
            return
        now = rfc3339_nano(read_ns)
        whole = data[:cut]
        if cut > LINE_MAX and max(map(len, whole.split(b"\n"))) > LINE_MAX:
            entries = []
            for line in whole.split(b"\n")[:-1]:
                head, line = long_line_pieces(line)
                entries += [self._entry(piece.decode("utf-8", "replace"), stream, now).decode() for piece in head]
                entries.append(self._entry(line.decode("utf-8", "replace") + "\n", stream, now).decode())
        else:
            # One decode and one C-level quote per line: the pump's cost is per line, so keep it small.
            lines = whole.decode("utf-8", "replace").split("\n")
            lines.pop()
            tail = '\\n","stream":"%s","time":"%s"}\n' % (stream, now)
            entries = ['{"log":' + quoted[:-1] + tail for quoted in map(_quote, lines)]
        # the pieces of a long line: no newline in "log", so `logs` prints them back as the one line
        entries += [self._entry(piece.decode("utf-8", "replace"), stream, now).decode() for piece in pieces]
        out = "".join(entries).encode()
        if not self.max_size or self.size + len(out) <= self.max_size:
            self._put(out)
            return
        batch, size = [], self.size
        for entry in entries:  # rotate between lines, so that no file passes max-size by more than a line
            entry = entry.encode()
            if batch and size + len(entry) > self.max_size:
                self._put(b"".join(batch))
                batch, size = [], 0
            batch.append(entry)
            size += len(entry)
        self._put(b"".join(batch))

    def close(self):
        now = rfc3339_nano()
        for stream, rest in self.partial.items():
            if rest:
                self._put(self._entry(rest.decode("utf-8", "replace"), stream, now))
        self.partial.clear()
        os.close(self.fd)


class RingLog:
    """``--log-opt mode=non-blocking`` for json-file and local: the pump never waits for the file.

    The pump's loop only queues what it read, within ``max-buffer-size`` bytes (1 MiB by default); a
    writer thread moves the queue to the log. When the file cannot keep up (a slow or frozen disk), the
    oldest lines are dropped to make room, as Docker's ring logger does, so the container's writes to
    stdout never block on the log. Only whole lines are queued (a line's start waits in ``partial`` for
    its end), so a drop never splices two lines; each chunk keeps the time it was read at.
    """

    def __init__(self, log, limit):
        import collections
        import threading

        self.log, self.limit = log, max(1, limit)
        self.queue = collections.deque()   # (stream, whole lines, read time in ns)
        self.size = self.dropped = 0
        self.partial = {}
        self.closing = False
        self.failed = None
        self.ready = threading.Condition()
        self.writer = threading.Thread(target=self._drain, name="log-ring", daemon=True)
        self.writer.start()

    def write(self, stream, data):
        data = self.partial.pop(stream, b"") + data
        cut = data.rfind(b"\n") + 1
        if len(data) - cut > LINE_MAX:
            cut = len(data)   # a line this long goes on in pieces (the inner log cuts them)
        if cut < len(data):
            self.partial[stream] = data[cut:]
            data = data[:cut]
        if data:
            self._queue(stream, data)

    def _queue(self, stream, data):
        with self.ready:
            self.queue.append((stream, data, time.time_ns()))
            self.size += len(data)
            while self.size > self.limit and len(self.queue) > 1:
                self._drop_oldest(self.size - self.limit)
            self.ready.notify()

    def _drop_oldest(self, excess):
        """Drop lines from the oldest chunk: the whole chunk, or its first lines past ``excess`` bytes."""
        stream, data, read_ns = self.queue[0]
        cut = data.find(b"\n", excess - 1) + 1
        if 0 < cut < len(data):
            self.queue[0] = (stream, data[cut:], read_ns)
            data = data[:cut]
        else:
            self.queue.popleft()
        self.size -= len(data)
        self.dropped += data.count(b"\n")

    def _drain(self):
        while True:
            with self.ready:
                while not self.queue and not self.closing:
                    self.ready.wait()
                if not self.queue:
                    return
                stream, data, read_ns = self.queue.popleft()
                self.size -= len(data)
            try:
                self.log.write(stream, data, read_ns)
            except OSError as exc:   # a full disk: these lines are lost, the container runs on
                if self.failed is None:
                    self.failed = exc
                    os.write(2, b"pallet: warning: log file: %s\n" % str(exc).encode())

    def close(self):
        for stream, rest in self.partial.items():
            self._queue(stream, rest)   # the inner log closes it as a line, as without the ring
        self.partial.clear()
        with self.ready:
            self.closing = True
            self.ready.notify()
        self.writer.join()
        if self.dropped:
            os.write(2, b"pallet: warning: mode=non-blocking: %d log lines dropped, the log file was slower "
                        b"than the output (max-buffer-size %d)\n" % (self.dropped, self.limit))
        self.log.close()


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_bytes(text):
    """``10m``, ``512k``, ``1.5g``, ``4096``: Docker's binary sizes, as ``--log-opt`` takes them."""
    text = str(text).strip().lower()
    number, unit = text.rstrip("bkmg"), text[len(text.rstrip("bkmg")):][:1]
    return int(float(number) * _UNITS[unit])


def json_log_for(path, driver, config):
    """The local log file of a json-file or local container (stdlib only: the bare log pump calls it).

    Rotation is on by default, unlike Docker's json-file (moby#40207: an unbounded log fills the
    disk): json-file 10 MiB × 3 (the figures Docker's own docs recommend), local 20 MiB × 5 and
    compressed, as Docker's local driver. ``max-size -1`` turns rotation off.
    """
    size, files, compress = ("20m", "5", "true") if driver == "local" else ("10m", "3", "false")
    text = str(config.get("max-size", size)).strip().lower()
    max_size = 0 if text == "-1" else parse_bytes(text)
    log = JsonLog(path, max_size, int(config.get("max-file", files)),
                  str(config.get("compress", compress)).lower() in ("true", "1", "yes"))
    if config.get("mode") == "non-blocking":
        return RingLog(log, parse_bytes(config.get("max-buffer-size", "1m")))
    return log


class AttachServer:
    """``pallet attach`` (and ``run -it``) clients on a SOCK_SEQPACKET socket in the run dir.

    A client gets ``H`` + ``t`` (tty) or ``p`` (pipes) with the container's input fd, if any (the
    pty master, or the kept stdin pipe) as SCM_RIGHTS; then ``1``/``2`` + output; last ``x`` + the
    exit code, sent once the exit is recorded. A client that goes away (detach) is just dropped.
    """

    def __init__(self, listen_fd, stdin_fd, tty):
        import socket

        self.socket = socket
        self.listener = socket.socket(fileno=listen_fd)
        self.stdin_fd, self.tty, self.clients = stdin_fd, tty, []

    def accept(self, timeout=None):
        self.listener.settimeout(timeout)
        try:
            conn, _addr = self.listener.accept()
        except OSError:  # the CLI that was to attach is gone: log on without it
            return
        finally:
            self.listener.settimeout(None)
        conn.settimeout(None)
        try:
            hello = [b"H" + (b"t" if self.tty else b"p")]
            if self.stdin_fd is not None:
                self.socket.send_fds(conn, hello, [self.stdin_fd])
            else:
                conn.sendall(hello[0])
            self.clients.append(conn)
        except OSError:
            conn.close()

    def send(self, message):
        for conn in list(self.clients):
            try:
                conn.sendall(message)
            except OSError:
                self.clients.remove(conn)
                conn.close()

    def close(self, code):
        self.send(b"x%d" % code)
        for conn in self.clients:
            conn.close()
        self.listener.close()


def pump_to_log(pid, sources, log, server=None):
    """Copy ``sources`` ({fd: stream}) to ``log`` (and attached clients) until ``pid`` exits and the fds
    drain; return its status."""
    poller = select.poll()
    for fd in sources:
        poller.register(fd, select.POLLIN)
    pidfd = os.pidfd_open(pid)
    poller.register(pidfd, select.POLLIN)
    if server is not None:
        poller.register(server.listener.fileno(), select.POLLIN)
    tags = {"stdout": b"1", "stderr": b"2"}
    open_fds = set(sources)
    exited = False
    while open_fds:
        events = poller.poll(200 if exited else None)
        if exited and not events:
            break
        for fd, _mask in sorted(events, key=lambda event: server is None or event[0] != server.listener.fileno()):
            if fd == pidfd:
                exited = True
                poller.unregister(pidfd)
                continue
            if server is not None and fd == server.listener.fileno():
                server.accept()
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO from a pty master once the container side closed
                data = b""
            if not data:
                poller.unregister(fd)
                open_fds.discard(fd)
                continue
            if log is not None:
                log.write(sources[fd], data)
            if server is not None and server.clients:
                server.send(tags[sources[fd]] + data)
    os.close(pidfd)
    while True:
        got, status = os.waitpid(-1, 0)
        if got == pid:
            return status


def _release_at_exit(pid, log):
    """A driver in ``mode=blocking`` may hold the pump while the container runs; once it exited, the
    pump must go on to drain the pipes and record the exit: a thread tells the driver so."""
    import threading

    pidfd = os.pidfd_open(pid)

    def watch():
        select.select([pidfd], [], [])
        os.close(pidfd)
        log.release()

    threading.Thread(target=watch, name="release-at-exit", daemon=True).start()


_LOADED = []


def load_pallet(repo, params_path):
    """Make pallet (and the plugins) importable: the monitor's own ``pallet`` first, then the import path
    the CLI had (its plugins were found on it). ``site`` runs only when the CLI had an import hook that a
    path cannot carry (another distribution's editable finder): processing every ``.pth`` again costs
    ~40 ms here, all of it between a container's exit and its recorded exit."""
    import json
    import sys

    if _LOADED:
        return
    with open(params_path) as handle:
        params = json.load(handle)
    saved = params.get("sys_path")
    if saved is None or params.get("site"):
        import site

        site.main()
        # -I ignored PYTHONPATH; the CLI honoured it, so plugins found through it must observe the exit too.
        saved = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p] + sys.path
    sys.path[:] = [repo] + [p for p in saved if p != repo]
    _LOADED.append(repo)


def open_log(repo, log_path, params_path):
    """json-file and local stay stdlib-only (a small monitor); any other driver loads pallet and its plugin."""
    import json

    with open(params_path) as handle:
        log = json.load(handle).get("log") or {"driver": "json-file", "config": {}, "path": log_path}
    if log["driver"] == "none":
        return None
    if log["driver"] in ("json-file", "local"):
        return json_log_for(log["path"], log["driver"], log["config"])
    try:
        load_pallet(repo, params_path)
        from pallet.kernel.logdrivers import open_sink

        with open(params_path) as handle:
            run_root = json.load(handle).get("run_root")
        return open_sink(log, json_log_for, long_line_pieces, run_root=run_root)
    except Exception as exc:  # the container runs on; `pallet logs` says why nothing was shipped
        tmp = os.path.join(os.path.dirname(log["path"]), "log-driver-error")
        with open(tmp + ".tmp", "w") as handle:
            handle.write(f"log driver {log['driver']}: {exc}\n")
        os.replace(tmp + ".tmp", tmp)
        return json_log_for(log["path"], "json-file", {"max-size": "10m", "max-file": "2"})


def after_exit_by_engine(params_path, code):
    """Hand the exit to the root's resident engine, where pallet is imported already (``pallet engine
    after-exit``, run by a worker as any command): True once it recorded it. False when no engine runs,
    or it did not take the command, or its worker failed; then this process loads pallet and does it
    (``unless_recorded``: a worker that failed after recording the exit is not repeated)."""
    import json
    import sys

    with open(params_path) as handle:
        params = json.load(handle)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        import launcher   # stdlib only, as this file
    finally:
        del sys.path[0]
    sock = launcher.connect(os.path.join(params["run_root"], launcher.SOCKET_NAME))
    if sock is None:
        return False
    try:   # a _socket.socket is no context manager
        argv = ["--root", params["root"], "--run-root", params["run_root"], "engine", "after-exit",
                params_path, str(code)]
        try:
            launcher.send_request(sock, argv)
        except OSError:
            return False
        reply = launcher.receive(sock)
        if reply is None or "direct" in reply or "refused" in reply:
            return False
        status = launcher.receive(sock)
    finally:
        sock.close()
    return status is not None and status.get("exit") == 0


def parse_items(args):
    """``FD:role`` items into {role: [fd, ...]}."""
    items = {}
    for item in args:
        fd, _sep, role = item.partition(":")
        items.setdefault(role, []).append(int(fd))
    return items


def pump(repo, pid, log_path, params, items, record_exit=None):
    """Pump the container's output until it exits, publish its code, then record the exit: through
    ``record_exit(code)`` when given (a monitor that still has pallet loaded), else by the engine or here."""
    sources = {fd: role for role in ("stdout", "stderr") for fd in items.get(role, [])}
    server = None
    listening = items.get("attach") or items.get("attach-first")
    if listening:
        server = AttachServer(listening[0], (items.get("stdin") or [None])[0], "stderr" not in items)
        if "attach-first" in items:
            server.accept(timeout=10)  # run -it: its CLI connects right away and must see the first output
    log = open_log(repo, log_path, params)
    if hasattr(log, "release"):
        _release_at_exit(pid, log)
    status = pump_to_log(pid, sources, log, server)
    if log is not None:
        log.close()
    code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    # Published at once for ps/stop/wait; the full record update needs pallet loaded.
    fd = os.open(os.path.join(os.path.dirname(params), "exit-code"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, b"%d\n" % code)
    os.close(fd)
    try:
        if record_exit is not None:
            record_exit(code)
        elif not after_exit_by_engine(params, code):
            load_pallet(repo, params)
            from pallet.kernel.exit_handler import after_exit

            after_exit(params, code, unless_recorded=True)
    finally:
        if server is not None:  # after the clean-up, so an attached `run --rm -it` returns with it done
            server.close(code)


def main(argv):
    """``logpump.py REPO PID LOG PARAMS ITEM…``; PARAMS is the JSON file ``after_exit`` reads; an ITEM is
    ``FD:stdout|stderr`` (an output), ``FD:attach`` (the attach socket) or ``FD:stdin`` (input for clients)."""
    pump(argv[1], int(argv[2]), argv[3], argv[4], parse_items(argv[5:]))


if __name__ == "__main__":
    import sys

    try:
        main(sys.argv)
    except BaseException:   # to monitor.err: os._exit would drop the interpreter's own report
        import traceback

        traceback.print_exc()
    finally:
        os._exit(0)
