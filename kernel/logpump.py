"""The idle half of a detached container's monitor: copy output to the json-file log, reap, hand over.

The monitor forks from the CLI (fast start), starts the container, then ``execve``s this file
in a bare interpreter (``python -I -S``, stdlib only) so the process that sits beside a
long-running container holds ~8 MB instead of the CLI's ~23 MB. It stays the container's
parent and subreaper (both survive ``execve``). When the container exits it loads site and
pallet again and lets :func:`pallet.kernel.exit_handler.after_exit` record the exit and clean up.

Importable too, for :class:`JsonLog`.
"""

import os
import select
import time
from _json import encode_basestring as _quote


def rfc3339_nano(ns=None):
    ns = time.time_ns() if ns is None else ns
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".%09dZ" % frac


class JsonLog:
    """Docker's json-file driver: one ``{"log", "stream", "time"}`` object per line of output."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.partial = {}

    def _entry(self, text, stream, now):
        return ('{"log":%s,"stream":"%s","time":"%s"}\n' % (_quote(text), stream, now)).encode()

    def write(self, stream, data):
        lines = (self.partial.pop(stream, b"") + data).split(b"\n")
        self.partial[stream] = lines.pop()
        if lines:
            now = rfc3339_nano()
            out = b"".join(self._entry(line.decode("utf-8", "replace") + "\n", stream, now) for line in lines)
            while out:
                out = out[os.write(self.fd, out):]

    def close(self):
        now = rfc3339_nano()
        for stream, rest in self.partial.items():
            if rest:
                os.write(self.fd, self._entry(rest.decode("utf-8", "replace"), stream, now))
        self.partial.clear()
        os.close(self.fd)


def pump_to_log(pid, sources, log):
    """Copy ``sources`` ({fd: stream}) to ``log`` until ``pid`` exits and the fds drain; return its status."""
    poller = select.poll()
    for fd in sources:
        poller.register(fd, select.POLLIN)
    pidfd = os.pidfd_open(pid)
    poller.register(pidfd, select.POLLIN)
    open_fds = set(sources)
    exited = False
    while open_fds:
        events = poller.poll(200 if exited else None)
        if exited and not events:
            break
        for fd, _mask in events:
            if fd == pidfd:
                exited = True
                poller.unregister(pidfd)
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO from a pty master once the container side closed
                data = b""
            if not data:
                poller.unregister(fd)
                open_fds.discard(fd)
                continue
            log.write(sources[fd], data)
    os.close(pidfd)
    while True:
        got, status = os.waitpid(-1, 0)
        if got == pid:
            return status


def main(argv):
    """``logpump.py REPO PID LOG PARAMS FD:STREAM…``; PARAMS is the JSON file ``after_exit`` reads."""
    import sys

    repo, pid, log_path, params = argv[1], int(argv[2]), argv[3], argv[4]
    sources = {int(item.split(":")[0]): item.split(":")[1] for item in argv[5:]}
    log = JsonLog(log_path)
    status = pump_to_log(pid, sources, log)
    log.close()
    code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    # Published at once for ps/stop/wait; the full record update needs pallet loaded (~0.2 s).
    fd = os.open(os.path.join(os.path.dirname(params), "exit-code"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, b"%d\n" % code)
    os.close(fd)
    import site

    site.main()
    # -I ignored PYTHONPATH; the CLI honoured it, so plugins found through it must observe the exit too.
    sys.path[:0] = [repo] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    from pallet.kernel.exit_handler import after_exit

    after_exit(params, code)


if __name__ == "__main__":
    import sys

    try:
        main(sys.argv)
    finally:
        os._exit(0)
